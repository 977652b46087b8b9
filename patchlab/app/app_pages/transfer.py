"""Transfer & theft: transfer matrices, ensembles, Papernot's substitute attack, transfer across learning
algorithms, model stealing and attacks through the stolen copy, each run live at a small size on built-in data."""

import io

import streamlit as st

from patchlab.app import ui

st.title("Transfer & theft")
st.caption("Adversarial examples made on one model often fool another; a model answering queries can be copied; "
           "the copy then hands the attacker a white-box view. Every run below trains its models and measures "
           "now, at a small size on scikit-learn's built-in 8×8 digits (or the built-in photos for ImageNet). "
           "The full-size numbers are in docs/transfer.md (`patchlab transfer …`).")

RESULTS = "tr_results"  # tab -> {"data": JSON-ready result, "png": figure bytes}


def work_dir():
    """Trained models are cached here across sessions (same place as the CLI's default)."""
    from patchlab.capture.inference import cache_dir

    return cache_dir().parent / "transfer"


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def run(tab: str, label: str, fn, figure=None) -> None:
    """Run `fn(progress)` with a progress bar; keep its result and figure for this session."""
    from patchlab.cli.transfer import _jsonable

    bar = st.progress(0.0, text=f"{label}…")

    def progress(step, total, metrics=None):
        bar.progress(min(1.0, step / max(total, 1)), text=f"{label}: {min(step, total)}/{total}")

    result = fn(progress)
    bar.progress(1.0, text=f"{label}: done in {result.get('seconds', 0):.0f} s")
    st.session_state.setdefault(RESULTS, {})[tab] = {"data": _jsonable(result),
                                                     "png": png(figure(result)) if figure else None}


def show(tab: str, caption: str = "") -> dict | None:
    res = st.session_state.get(RESULTS, {}).get(tab)
    if res is None:
        st.info("Press the button to run this experiment.")
        return None
    if res["png"]:
        st.image(res["png"], caption=caption or None)
    with st.popover("Numbers behind the figure"):
        st.json(res["data"], expanded=False)
    return res["data"]


def pct(v: float) -> str:
    return f"{100 * v:.1f}%"


tabs = st.tabs(["Transfer matrix", "Ensembles", "Substitute attack", "Across algorithms", "Model theft"])

# --- transfer matrix ---------------------------------------------------------------------------------------------
with tabs[0], ui.user_errors():
    st.write("Craft on each model (rows), score on each model (columns). The diagonal is the white-box attack.")
    c1, c2, c3 = st.columns(3)
    family = c1.radio("Models", ["digits (CNN, MLP, LR on 8×8 digits)", "ImageNet (the zoo, built-in photos)"],
                      key="tr_m_family")
    attack = c2.selectbox("Attack", ["fgsm", "pgd", "mi", "di", "ti"], key="tr_m_attack")
    digits = family.startswith("digits")
    eps = c3.slider("ε (L∞)", 0.01, 0.3, 0.1, 0.01, key="tr_m_eps") if digits else \
        c3.slider("ε (L∞, in 1/255)", 1.0, 16.0, 4.0, 1.0, key="tr_m_eps255") / 255
    if st.button("Run the matrix", type="primary", key="tr_m_run"):
        from patchlab.transfer import experiments as E
        from patchlab.transfer.figures import matrix_figure

        opts = {} if attack == "fgsm" else {"steps": 5}
        if digits:
            run("matrix", "matrix", lambda cb: E.digits_matrix(evaluate_on="digits8", include_mnist=False, n=300,
                                                                attack=attack, eps=eps, work=work_dir(),
                                                                attack_options=opts, progress=cb), matrix_figure)
        else:
            run("matrix", "matrix", lambda cb: E.imagenet_matrix(images="builtin", n=4, attack=attack, eps=eps,
                                                                  batch_size=4, attack_options=opts, progress=cb),
                matrix_figure)
    show("matrix", "Cells: the column model's accuracy on the row model's adversarial images (lower = transfers).")

# --- ensembles ---------------------------------------------------------------------------------------------------
with tabs[1], ui.user_errors():
    st.write("Liu et al. (2017): optimise against all models but one (row '-m'), test on every model. "
             "Single-model rows below for comparison.")
    c1, c2 = st.columns(2)
    targeted = c1.toggle("Targeted (a random wrong class per image)", key="tr_e_targeted")
    eps_e = c2.slider("ε (L∞)", 0.01, 0.3, 0.1, 0.01, key="tr_e_eps")
    if st.button("Run the ensemble table", type="primary", key="tr_e_run"):
        from patchlab.transfer import experiments as E
        from patchlab.transfer.figures import ensemble_figure

        run("ensemble", "ensemble", lambda cb: E.ensemble(family="digits", include_mnist=False, n=300, eps=eps_e,
                                                          target="random" if targeted else None, work=work_dir(),
                                                          attack_options={"steps": 5}, progress=cb), ensemble_figure)
    show("ensemble")

# --- substitute attack -------------------------------------------------------------------------------------------
with tabs[2], ui.user_errors():
    st.write("Papernot et al. (2017): the attacker only sees labels. A substitute trained on a few seed images, "
             "grown by Jacobian augmentation, crafts FGSM examples that are sent to the victim CNN.")
    c1, c2, c3 = st.columns(3)
    seeds = c1.number_input("Seed images", 10, 200, 50, 10, key="tr_s_seeds")
    rounds = c2.number_input("Augmentation rounds ρ", 0, 4, 3, key="tr_s_rounds")
    eps_s = c3.slider("ε (L∞)", 0.05, 0.4, 0.3, 0.05, key="tr_s_eps")
    st.caption(f"Oracle queries: {seeds} × 2^{rounds} = {seeds * 2 ** rounds} labels.")
    if st.button("Run the substitute attack", type="primary", key="tr_s_run"):
        from patchlab.transfer import experiments as E
        from patchlab.transfer.figures import substitute_figure
        from patchlab.transfer.substitute import SubstituteConfig

        cfg = SubstituteConfig(seed_size=int(seeds), rounds=int(rounds))
        run("substitute", "substitute", lambda cb: E.substitute(source="digits8", config=cfg, eps=eps_s,
                                                                work=work_dir(), progress=cb),
            lambda r: substitute_figure(r, anchor=None))
    data = show("substitute")
    if data:
        st.metric("Victim misclassifies (substitute's adversarial images)", pct(data["misclassification_rate"]),
                  delta=f"{100 * data['margin_over_noise']:+.1f} points vs same-norm noise")

# --- across algorithms -------------------------------------------------------------------------------------------
with tabs[3], ui.user_errors():
    st.write("Papernot et al. (2016): DNN, logistic regression, linear SVM, decision tree and kNN, each trained on "
             "its own part of the data. The tree and kNN have no gradients: their rows are crafted through "
             "substitutes trained on their labels.")
    if st.button("Run the 5×5 matrix", type="primary", key="tr_a_run"):
        from patchlab.transfer import experiments as E
        from patchlab.transfer.figures import matrix_figure
        from patchlab.transfer.substitute import SubstituteConfig

        run("algorithms", "algorithms", lambda cb: E.algorithms(
            source="digits8", eps=0.2, work=work_dir(), progress=cb,
            substitute_config=SubstituteConfig(seed_size=50, rounds=3)), matrix_figure)
    show("algorithms", "Cells: misclassification of the column model on the row model's FGSM images.")

# --- theft -------------------------------------------------------------------------------------------------------
with tabs[4], ui.user_errors():
    lr_col, cnn_col = st.columns(2)
    with lr_col:
        st.subheader("Exact copy of logistic regression")
        st.write("Tramèr et al. (2016): with confidences, d+1 queries solve for every weight.")
        if st.button("Steal the softmax regression", key="tr_t_lr"):
            from patchlab.transfer import experiments as E

            run("lr", "equation solving", lambda cb: E.steal_logreg(source="digits8"))
        lr = st.session_state.get(RESULTS, {}).get("lr")
        if lr:
            d = lr["data"]
            st.metric("Largest weight error", f"{d['max_abs_error']:.1e}", help="centred parameters, float64")
            st.caption(f"{d['queries']} queries for {d['identifiable_unknowns']} unknowns (d = {d['dim']}); "
                       f"agreement on {d['n']} held-out digits {pct(d['fidelity'])}.")
    with cnn_col:
        st.subheader("Stealing a CNN")
        strategies = st.multiselect("Query strategies", ["random", "jacobian", "uncertainty", "knockoff"],
                                    default=["random", "uncertainty"], key="tr_t_strategies")
        output = st.radio("The victim reveals", ["label", "probs"], horizontal=True, key="tr_t_output")
        if st.button("Steal the CNN", type="primary", key="tr_t_steal", disabled=not strategies):
            from patchlab.transfer import experiments as E
            from patchlab.transfer.figures import extraction_figure

            run("steal", "extraction", lambda cb: E.steal(source="digits8", strategies=strategies, outputs=(output,),
                                                          budgets=(50, 100, 200), work=work_dir(), progress=cb),
                lambda r: extraction_figure(r["runs"]))
    show("steal", "Fidelity = agreement with the victim on held-out digits.")
    st.subheader("Theft++: attack through the stolen copy")
    eps_t = st.slider("ε (L∞)", 0.02, 0.3, 0.1, 0.02, key="tr_t_eps")
    if st.button("Steal, then attack through the copy", type="primary", key="tr_t_pp"):
        from patchlab.transfer import experiments as E
        from patchlab.transfer.figures import theft_figure

        run("theft", "theft++", lambda cb: E.theft_plus_plus(source="digits8", budget=200, eps=eps_t,
                                                             attack_options={"steps": 10}, work=work_dir(),
                                                             progress=cb), theft_figure)
    show("theft", "Success: the victim was right before the attack and wrong after.")

    st.subheader("Stealing efficientnet_lite0 (ImageNet)")
    st.write("The victim reveals its top-5; the thief queries augmented views of a few images and trains a smaller "
             "student (a frozen efficientnet_lite1 trunk plus a new head), then attacks the victim through it.")
    from patchlab.data import shared_data_dir

    sample = shared_data_dir()
    if sample is None:
        st.info("This needs the shared ImageNet sample (imagenet-sample/ beside the checkout); "
                "`patchlab transfer steal-imagenet --images DIR` takes any labelled folder.")
    else:
        c1, c2 = st.columns(2)
        count = c1.slider("Images (a quarter held out)", 20, 120, 40, 20, key="tr_i_count")
        views = c2.slider("Queries per image (views)", 1, 8, 3, key="tr_i_views")
        if st.button("Steal efficientnet_lite0", type="primary", key="tr_i_run"):
            from patchlab.transfer import experiments as E
            from patchlab.transfer.figures import theft_figure
            from patchlab.transfer.imagenet import ImagenetTheftConfig

            cfg = ImagenetTheftConfig(limit=count, heldout=count // 4, views=views, epochs=20)
            run("imagenet", "ImageNet theft", lambda cb: E.steal_imagenet(config=cfg, steps=3, progress=cb),
                lambda r: theft_figure(r["theft++"]))
        data = show("imagenet", "Attacks crafted on the student, scored on the victim.")
        if data:
            st.dataframe([{k: v for k, v in r.items() if not k.endswith("ci95")} for r in data["rows"]],
                         column_config={c: st.column_config.NumberColumn(format="percent")
                                        for c in ("fidelity", "fidelity_top5", "accuracy")}, hide_index=True)
