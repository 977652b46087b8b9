"""Poisoning: which training images a prediction rests on (influence functions), Koh & Liang's dog -> fish
training-set attack, and Poison Frogs' clean-label feature collision, each with what a simple defense sees."""

import streamlit as st

from patchlab.app import ui
from patchlab.app.jobs import Job

st.title("Poisoning")
st.caption("A dog-vs-fish classifier: efficientnet_lite0's frozen features and a logistic-regression head "
           "retrained on them (Koh & Liang's and Shafahi et al.'s transfer setting). Every number is computed now "
           "by `patchlab.poisoning`; the attacks retrain the head on the poisoned training set before judging.")

JOB, KIND, SEEN = "pz_job", "pz_job_kind", "pz_job_seen"
SIZES = {"quick": dict(train_per_class=24, test_per_class=8, max_sources=4),
         "standard": dict(train_per_class=400, test_per_class=100, max_sources=None)}
SIZE_TEXT = {"quick": "Quick: 4 photos per class, 64 views (seconds)",
             "standard": "Standard: every photo, 1000 views (features computed once, minutes on a CPU)"}
SCORE_TEXT = {"loss": "training loss", "influence": "influence on the target", "knn": "k-NN outlier score",
              "spectral": "spectral signature"}


def start(kind: str, fn) -> None:
    st.session_state[JOB] = Job.start(kind, fn)
    st.session_state[KIND] = kind
    st.session_state.pop(SEEN, None)


def running() -> bool:
    job = st.session_state.get(JOB)
    return job is not None and job.snapshot().active


def defense_table(rows: list[dict]) -> None:
    import pandas as pd

    table = [{"poison": r["poison"], **{SCORE_TEXT[s]: f"rank {r[f'rank_{s}']} of {r['n']}"
                                         + (" · top 1%" if r[f"top1pct_{s}"] else "") for s in SCORE_TEXT}}
             for r in rows]
    st.caption("What a simple defense sees: each poison's rank among all training points (1 = most suspicious).")
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")


def prob_bars(before, after, names: list[str]) -> None:
    import pandas as pd

    frame = pd.DataFrame({"clean training set": before.float().numpy(), "poisoned training set": after.float().numpy()},
                         index=names)
    st.bar_chart(frame, stack=False, height=220)


def show_poison(original, poison, original_caption: str, poison_caption: str, key: str) -> None:
    """Original | poison (with its PNG) | amplified difference."""
    from patchlab.poisoning.figures import amplified

    view, amp = amplified(poison - original)
    c1, c2, c3 = st.columns(3)
    c1.image(ui.to_display(original), caption=original_caption, width="stretch")
    c2.image(ui.to_display(poison), caption=poison_caption, width="stretch")
    c3.image(ui.to_display(view), caption=f"difference ×{amp:.0f}", width="stretch")
    data = ui.png_bytes(poison, kind="poison")  # tagged, named by its content hash: downloads never collide
    c2.download_button("Poison PNG", data, file_name=ui.download_name(key, "poison", data), mime="image/png", key=key)


def figure_png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def view_label(task, i: int, probs=None) -> str:
    v = task.test[i]
    extra = f" · p(true) {float(probs[i, v.label]):.0%}" if probs is not None else ""
    return f"#{i} {task.class_names[v.label]}: {v.name}{extra}"


# --- 1 · the task ----------------------------------------------------------------------------------------------------
with ui.user_errors():
    from patchlab.poisoning.task import SUPERCLASSES

    st.subheader("1 · The task")
    c1, c2, c3 = st.columns([1, 1, 3])
    first = c1.selectbox("Class A", list(SUPERCLASSES), index=list(SUPERCLASSES).index("dog"), key="pz_class_a")
    second = c2.selectbox("Class B", [c for c in SUPERCLASSES if c != first],
                          index=[c for c in SUPERCLASSES if c != first].index("fish") if first != "fish" else 0,
                          key="pz_class_b")
    size = c3.radio("Size", list(SIZES), format_func=SIZE_TEXT.get, key="pz_size")
    if st.button("Prepare the task", type="primary", disabled=running(), key="pz_prepare"):
        from patchlab.data import shared_data_dir
        from patchlab.errors import PatchlabError
        from patchlab.poisoning.task import TaskConfig, build_task

        root = shared_data_dir()
        if root is None:
            raise PatchlabError("the shared imagenet-sample folder is absent; the task is built from it")
        model = ui.get_model("efficientnet_lite0")
        cfg = TaskConfig((first, second), **SIZES[size])

        def work(progress, stop):
            from patchlab.poisoning.koh_liang import train_clean

            task = build_task(root / "imagenet-sample", model, cfg, progress=progress)
            return task, train_clean(task)

        for key in ("pz_task", "pz_infl", "pz_kl", "pz_fc"):
            st.session_state.pop(key, None)
        start("task", work)
        st.rerun()

    @st.fragment(run_every=1.0 if running() else None)
    def job_panel() -> None:
        job = st.session_state.get(JOB)
        if job is None:
            return
        snap = job.snapshot()
        what = {"task": "Features", "kl": "Koh & Liang attack", "fc": "Feature collision"}[st.session_state[KIND]]
        if snap.active:
            st.progress(snap.fraction, text=f"{what}: {snap.step}/{snap.total} · {snap.seconds:.0f} s")
        elif snap.state == "failed":
            st.error(snap.error, icon=":material/error:")
        if not snap.active and not st.session_state.get(SEEN):
            st.session_state[SEEN] = True
            if snap.result is not None:
                st.session_state[{"task": "pz_task", "kl": "pz_kl", "fc": "pz_fc"}[st.session_state[KIND]]] = snap.result
            st.rerun(scope="app")

    job_panel()

prepared = st.session_state.get("pz_task")
if prepared is None:
    st.info("Choose two superclasses and a size, then press **Prepare the task**.")
    st.stop()
task, clean = prepared
with ui.user_errors():
    summary = task.summary()
    acc = float((clean.test_pred == task.test_labels).double().mean())
    per = summary["per_class"]
    st.success(f"{summary['n_train']} training and {summary['n_test']} test views of "
               + ", ".join(f"{name} ({p['train_photos']} + {p['test_photos']} photos)" for name, p in per.items())
               + f"; the clean head classifies {acc:.1%} of the test views correctly.", icon=":material/check_circle:")
    names = list(task.class_names)
    correct = [i for i in range(len(task.test)) if int(clean.test_pred[i]) == task.test[i].label]

influence_tab, kl_tab, fc_tab = st.tabs(["Influence", "Koh & Liang attack", "Feature collision"])

# --- influence ---------------------------------------------------------------------------------------------------
with influence_tab, ui.user_errors():
    st.caption("Koh & Liang (2017): I_up,loss(z, z_test) = −∇L(z_test)ᵀ H⁻¹ ∇L(z), how up-weighting a training "
               "view changes this test view's loss, checked against actually retraining without it.")
    c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
    t_idx = c1.selectbox("Test view", range(len(task.test)), format_func=lambda i: view_label(task, i, clean.test_probs),
                         key="pz_infl_test")
    solver = c2.selectbox("Solver", ["auto", "exact", "cg", "lissa"], key="pz_infl_solver")
    n_loo = int(c3.number_input("Leave-one-out checks", 0, len(task.train), min(40, len(task.train)),
                                key="pz_infl_loo"))
    top = int(c4.number_input("Show top", 1, 10, 5, key="pz_infl_top"))
    if st.button("Explain this prediction", type="primary", key="pz_infl_run"):
        from patchlab.poisoning.problems import dogfish_setup, explain

        with st.spinner("Influence of every training view…"):
            ex = explain(dogfish_setup(task), t_idx, solver=solver, top=top, loo=n_loo)
        st.session_state["pz_infl"] = ex
    ex = st.session_state.get("pz_infl")
    if ex is not None:
        from patchlab.poisoning import figures

        d = ex.to_dict()
        st.image(figure_png(figures.influence_figure(ex, len(ex.helpful))), width="stretch")
        sv = d["solver"]
        st.caption(f"Solver {sv['solver']} ({sv['reason']}), {sv['seconds']:.2f} s, residual {sv['residual']:.1e}; "
                   f"{d['n']} training views, {d['num_params']} head parameters.")
        if ex.checks:
            c = ex.checks[0]
            st.metric("Influence vs leave-one-out (Pearson)", f"{c.pearson:.3f}", help=f"{c.n} retrainings")
            st.image(figure_png(figures.loo_figure(ex.checks)), width=420)

# --- Koh & Liang --------------------------------------------------------------------------------------------------
with kl_tab, ui.user_errors():
    st.caption("Perturb k training images inside a small L∞ box, following the influence of each pixel on the "
               "target's loss through the head and the whole network; retrain; repeat until the target flips. "
               "Koh & Liang flipped 57% of their test predictions with one poisoned image.")
    c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
    target = c1.selectbox("Target test view", correct, format_func=lambda i: view_label(task, i, clean.test_probs),
                          key="pz_kl_target")
    k = int(c2.number_input("Poisoned images", 1, 5, 1, key="pz_kl_k"))
    eps255 = c3.select_slider("L∞ box (/255)", [1, 2, 3, 4, 6, 8], 2, key="pz_kl_eps")
    iters = int(c4.number_input("Max steps", 1, 200, 40, key="pz_kl_iters"))
    if st.button("Poison the training set", type="primary", disabled=running() or target is None, key="pz_kl_run"):
        from patchlab.poisoning.koh_liang import KohLiangConfig, attack_target

        model = ui.get_model("efficientnet_lite0")
        cfg = KohLiangConfig(num_poisons=k, eps=eps255 / 255, step=eps255 / 255 / 4, max_iters=iters)
        start("kl", lambda progress, stop: attack_target(task, model, clean, target, cfg, progress=progress))
        st.rerun()
    out = st.session_state.get("pz_kl")
    if out is not None:
        r = out.result
        verdict = (f"target #{r.target} ({r.true_label}, p = {r.before_true_prob:.0%}) → **{r.after_pred}** "
                   f"({r.after_confidence:.0%}) after {r.iterations} step(s); {r.others_moved} other test "
                   f"prediction(s) moved")
        (st.success if r.flipped else st.warning)(("Flipped: " if r.flipped else "Not flipped: ") + verdict)
        for j in range(len(r.poisons)):
            show_poison(out.originals[j], out.poisons[j], f"training image {r.poison_views[j]}",
                        f"poison (L∞ {r.poison_linf[j] * 255:.0f}/255)", f"poison_{j}")
        c1, c2 = st.columns([1, 2])
        c1.image(ui.to_display(out.target_image), caption=f"target {r.target_view}", width="stretch")
        with c2:
            prob_bars(out.before_probs, out.after_probs, names)
        if r.defense:
            defense_table(r.defense)

# --- feature collision -----------------------------------------------------------------------------------------
with fc_tab, ui.user_errors():
    st.caption("Shafahi et al. (2018), Poison Frogs: a poison that looks like a base image of the other class but "
               "collides with the target in feature space, added with its correct label. One poison sufficed in "
               "their transfer-learning setting.")
    c1, c2 = st.columns(2)
    fc_target = c1.selectbox("Target test view", correct, format_func=lambda i: view_label(task, i, clean.test_probs),
                             key="pz_fc_target")
    bases = [i for i in correct if fc_target is not None and task.test[i].label != task.test[fc_target].label]
    fc_base = c2.selectbox("Base (the poison looks like it)", bases, format_func=lambda i: view_label(task, i),
                           key="pz_fc_base")
    c1, c2, c3 = st.columns(3)
    opacity = c1.slider("Watermark opacity", 0.0, 0.5, 0.0, 0.05, key="pz_fc_opacity",
                        help="Blend the target into the base before optimising (Shafahi et al. §4.2)")
    fc_iters = int(c2.number_input("Iterations", 1, 1000, 100, key="pz_fc_iters"))
    beta0 = c3.number_input("β₀ (pixel proximity)", 0.0, 10.0, 0.25, 0.05, key="pz_fc_beta")
    if st.button("Craft the poison", type="primary", disabled=running() or fc_base is None, key="pz_fc_run"):
        from patchlab.poisoning.feature_collision import FeatureCollisionConfig, run_pairs

        model = ui.get_model("efficientnet_lite0")
        cfg = FeatureCollisionConfig(beta0=beta0, opacity=opacity, max_iters=fc_iters, batch=1)

        def work(progress, stop, pair=(fc_target, fc_base), cfg=cfg):
            kept = []
            run_pairs(task, model, cfg, [pair], progress=progress, stop=stop, on_outcome=kept.append, clean=clean)
            return kept[0] if kept else None

        start("fc", work)
        st.rerun()
    po = st.session_state.get("pz_fc")
    if po is not None:
        r = po.result
        text = (f"target #{r.target} ({r.target_label}) → **{r.after_pred}** ({r.after_confidence:.0%}); feature "
                f"distance {r.start_distance:.1f} → {r.feature_distance:.1f}; {r.others_moved} other test "
                f"prediction(s) moved")
        (st.success if r.success else st.warning)(("Misclassified as the base class: " if r.success
                                                    else "Not misclassified: ") + text)
        show_poison(po.base, po.poison, f"base ({r.base_label})",
                    f"poison, labelled {r.base_label} (L∞ {r.poison_linf * 255:.0f}/255)", "poison_collision")
        c1, c2 = st.columns([1, 2])
        c1.image(ui.to_display(po.target), caption=f"target ({r.target_label})", width="stretch")
        with c2:
            prob_bars(po.before, po.after, names)
        if r.defense:
            defense_table(r.defense)
