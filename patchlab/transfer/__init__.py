"""Transfer, black-box attacks and model theft.

    from patchlab.transfer import transfer_matrix, ensemble_table, Oracle, train_substitute, substitute_attack
    from patchlab.transfer import extract, extract_softmax_regression, attack_through_copies

- `matrix`: source -> target transfer matrices (one pixel space for models of different input sizes);
- `ensemble`: Liu et al. 2017 ensemble attacks and their Table 4 layout;
- `oracle`: labels-only (or top-1 / top-k / probabilities) query access with an exact counter and a budget;
- `substitute`: Papernot et al. 2017 substitute training (Jacobian augmentation, periodic step, reservoir sampling);
- `algorithms`: Papernot et al. 2016 cross-technique matrix (DNN, LR, SVM, decision tree, kNN);
- `equation_solving`: Tramèr et al. 2016 exact extraction of softmax regression;
- `extraction`: stealing a CNN with random, Jacobian, uncertainty and Knockoff-style queries;
- `theft`: theft++ (attacking through the stolen copy); `imagenet`: stealing efficientnet_lite0;
- `experiments`: all of the above on the standard data (the CLI, app and benchmarks call these).
"""

from patchlab.transfer.common import AtSize, LinearModel, SklearnModel, at_size, predict, rate
from patchlab.transfer.ensemble import EnsembleModel, ensemble_table
from patchlab.transfer.equation_solving import extract_softmax_regression
from patchlab.transfer.extraction import ExtractionConfig, extract
from patchlab.transfer.matrix import transfer_matrix
from patchlab.transfer.oracle import Answer, Oracle, QueryBudgetExceeded
from patchlab.transfer.substitute import SubstituteConfig, substitute_attack, train_substitute
from patchlab.transfer.theft import attack_through_copies

__all__ = [
    "Answer", "AtSize", "EnsembleModel", "ExtractionConfig", "LinearModel", "Oracle", "QueryBudgetExceeded",
    "SklearnModel", "SubstituteConfig", "at_size", "attack_through_copies", "ensemble_table", "extract",
    "extract_softmax_regression", "predict", "rate", "substitute_attack", "train_substitute", "transfer_matrix",
]
