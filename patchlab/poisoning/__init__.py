"""Training-set poisoning: influence functions checked against leave-one-out (Koh & Liang 2017), the
influence-guided dog -> fish attack, clean-label feature-collision poisons (Shafahi et al. 2018) and what a
simple defense sees.

    from patchlab.models import load_model
    from patchlab.poisoning import TaskConfig, build_task, KohLiangConfig, train_clean, attack_target
    model = load_model("efficientnet_lite0")
    task = build_task(shared_data_dir() / "imagenet-sample", model, TaskConfig())   # features cached on disk
    clean = train_clean(task)
    outcome = attack_target(task, model, clean, target=0, config=KohLiangConfig(num_poisons=1))
"""

from patchlab.poisoning.defense_view import defense_view, knn_scores, spectral_scores
from patchlab.poisoning.feature_collision import FeatureCollisionConfig, PairResult, choose_pairs, craft, run_pairs
from patchlab.poisoning.features import FeatureCache, augmented_view, cache_root, penultimate
from patchlab.poisoning.head import Problem, fit
from patchlab.poisoning.influence import LissaConfig, check_against_loo, inverse_hvp, leave_one_out
from patchlab.poisoning.koh_liang import (CleanModel, KohLiangConfig, PoisonOutcome, TargetResult, attack_target,
                                          choose_targets, run_targets, train_clean)
from patchlab.poisoning.problems import InfluenceSetup, digits_setup, dogfish_setup, explain, misclassified
from patchlab.poisoning.task import SUPERCLASSES, TaskConfig, TransferTask, View, build_task, split_task

__all__ = [
    "CleanModel", "FeatureCache", "FeatureCollisionConfig", "InfluenceSetup", "KohLiangConfig", "LissaConfig",
    "PairResult", "PoisonOutcome", "Problem", "SUPERCLASSES", "TargetResult", "TaskConfig", "TransferTask", "View",
    "attack_target", "augmented_view", "build_task", "cache_root", "check_against_loo", "choose_pairs",
    "choose_targets", "craft", "defense_view", "digits_setup", "dogfish_setup", "explain", "fit",
    "inverse_hvp", "knn_scores", "leave_one_out", "misclassified", "penultimate", "run_pairs", "run_targets",
    "spectral_scores", "split_task", "train_clean",
]
