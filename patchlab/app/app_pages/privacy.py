"""Privacy of training data: DP-SGD at a chosen ε (live ε spent), PATE with its privacy analysis, membership
inference against non-private and DP models (ROC with the DP bound), and an ε calculator. All training runs in
background jobs; the numbers come from `patchlab.privacy`."""

import io

import streamlit as st

from patchlab.app import ui
from patchlab.app.jobs import Job
from patchlab.privacy.data import default_model, model_kwargs
from patchlab.privacy.dpsgd import GRAD_SAMPLE_MODES
from patchlab.privacy.pate import AGGREGATORS, TEACHERS

st.title("Privacy")
st.caption("Can a model leak its training data, and what does differential privacy buy? DP-SGD (Abadi et al. 2016) "
           "on Opacus, PATE (Papernot et al. 2016, 2018) and membership inference (Yeom et al. 2018; LiRA, Carlini "
           "et al. 2022), on digits. Training runs in the background: you can keep using the page.")

DATA = {"scikit-learn digits (8x8, fastest)": "sklearn", "MNIST (the shared 10k test set, split)": "mnist"}


def data_choice(key: str) -> str:
    from patchlab.data import shared_data_dir

    root = shared_data_dir()
    options = [k for k, v in DATA.items() if v == "sklearn" or (root is not None and (root / "mnist").is_dir())]
    return DATA[st.selectbox("Data", options, key=key,
                             help="The private part trains the models; the public part is PATE's student data; "
                                  "the test part only measures accuracy")]


@st.cache_resource(show_spinner=False, max_entries=2)
def load_data(spec: str):
    from patchlab.data import shared_data_dir
    from patchlab.privacy.data import privacy_data

    return privacy_data(None if spec == "sklearn" else shared_data_dir() / "mnist", seed=0)


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()




def job_running(key: str) -> bool:
    job = st.session_state.get(key)
    return job is not None and job.snapshot().active


def start_job(key: str, name: str, work) -> None:
    """Run `work(progress, stop)` in the background as this session's job `key`; the panel polls it."""
    st.session_state[key] = Job.start(name, work)
    st.session_state[f"{key}_redraw"] = True
    st.rerun()


def job_panel(key: str, running_text: str, show_result) -> None:
    """Progress of this session's job `key` (refreshed every second while it runs), then its result."""
    running = job_running(key)

    @st.fragment(run_every=1.0 if running else None)
    def panel():
        job = st.session_state.get(key)
        if job is None:
            st.info("Nothing run in this session yet.")
            return
        snap = job.snapshot()
        info = " · ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in snap.metrics.items())
        st.progress(snap.fraction, text=f"{snap.state}: {running_text} {snap.step}/{snap.total} · {info} · "
                                        f"{snap.seconds:.0f} s")
        if snap.state == "failed":
            st.error(snap.error, icon=":material/error:")
        if not snap.active:
            if snap.result is not None:
                show_result(snap.result)
            if st.session_state.get(f"{key}_redraw"):  # once: a full rerun stops the polling, enables the button
                st.session_state[f"{key}_redraw"] = False
                st.rerun(scope="app")

    panel()


tab_dp, tab_pate, tab_mia, tab_eps = st.tabs(["DP-SGD", "PATE", "Membership inference", "ε calculator"])

# --- DP-SGD -------------------------------------------------------------------------------------------------------
with tab_dp, ui.user_errors():
    st.markdown("Clip every example's gradient to norm **C**, add Gaussian noise, sample batches by Poisson "
                "sampling: the accountant adds up the privacy spent. The noise is calibrated so that the chosen "
                "epochs spend exactly the target ε (δ = 1e-5).")
    c1, c2, c3 = st.columns(3)
    with c1:
        dp_data = data_choice("dp_data")
        size = 8 if dp_data == "sklearn" else 28
        kinds = ["dpcnn", "cnn", "mlp", "logreg", "scatter"] if size >= 16 else ["cnn", "mlp", "logreg", "scatter"]
        dp_kind = st.selectbox("Model", kinds, key="dp_model", help="dpcnn: the small CNN of DP-SGD papers; "
                               "scatter: a linear model on fixed ScatterNet features (Tramèr & Boneh 2021)")
        dp_act = st.selectbox("Activation", ["tanh", "relu"], key="dp_act",
                              help="tanh (a tempered sigmoid) loses less to clipping than ReLU (Papernot et al. 2021)")
    with c2:
        dp_eps = st.select_slider("Target ε", [0.5, 1.0, 2.0, 4.0, 8.0], 2.0, key="dp_eps")
        dp_epochs = int(st.number_input("Epochs", 1, 200, 5, key="dp_epochs"))
        dp_batch = int(st.number_input("Expected batch (Poisson)", 8, 4096, 128, key="dp_batch"))
    with c3:
        dp_lr = st.number_input("Learning rate (SGD)", 0.01, 20.0, 1.0, key="dp_lr")
        dp_c = st.number_input("Clipping norm C", 0.01, 10.0, 1.0, key="dp_clip")
        dp_mode = st.selectbox("Per-sample gradients", GRAD_SAMPLE_MODES.names(), key="dp_mode",
                               format_func=GRAD_SAMPLE_MODES.title,
                               help="All give the same update; book-keeping (the default) clips in one "
                                    "backward pass and is the fastest, Opacus's ghost clipping needs two")
    dp_baseline = st.checkbox("Also train the same model without privacy", value=True, key="dp_baseline")
    running = job_running("dp_job")
    if st.button("Train with DP-SGD", type="primary", disabled=running, key="dp_run"):
        d = load_data(dp_data)
        mk = model_kwargs(dp_kind, dp_act, d.size)
        settings = dict(target_epsilon=float(dp_eps), epochs=dp_epochs, batch_size=dp_batch, lr=float(dp_lr),
                        max_grad_norm=float(dp_c), grad_sample_mode=dp_mode)

        def work(progress, stop):
            from patchlab.models.digits import accuracy, fit, make_digits_model
            from patchlab.privacy.dpsgd import DPSGDConfig, train_dpsgd
            from patchlab.privacy.plots import dpsgd_history_figure

            res = train_dpsgd(make_digits_model(**mk, seed=0), d.private.images, d.private.labels,
                              DPSGDConfig(**settings), progress=progress, stop=stop)
            out = {"summary": res.summary(), "accuracy": accuracy(res.model, d.test.images, d.test.labels),
                   "n_test": len(d.test), "figure": png(dpsgd_history_figure(res.history, settings["target_epsilon"])),
                   "data": d.source, "sizes": d.sizes()}
            if dp_baseline and not stop.is_set():
                base = make_digits_model(**mk, seed=0)
                fit(base, d.private.images, d.private.labels, epochs=settings["epochs"], lr=1e-3, batch_size=128)
                out["baseline"] = accuracy(base, d.test.images, d.test.labels)
            return out

        start_job("dp_job", "dpsgd", work)

    def show_dp(r):
        s = r["summary"]
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Test accuracy", f"{r['accuracy']:.1%}", help=f"{r['n_test']} test digits")
        if "baseline" in r:
            m2.metric("Without privacy", f"{r['baseline']:.1%}", delta=f"{r['accuracy'] - r['baseline']:+.1%}")
        m3.metric("ε spent (RDP)", f"{s['epsilons']['rdp']:.3f}", help=f"δ = {s['delta']:g}")
        if s["epsilons"].get("prv") is not None:
            m4.metric("ε spent (PRV)", f"{s['epsilons']['prv']:.3f}", help="the tighter PRV accountant, same steps")
        sizes = ", ".join(f"{k} {v}" for k, v in r["sizes"].items())
        st.caption(f"{r['data']} ({sizes}) · noise multiplier σ = {s['noise_multiplier']:.3f} · sampling rate "
                   f"q = {s['sample_rate']:.4f} · {s['steps']} noisy steps · {s['seconds']:.0f} s")
        st.image(r["figure"], width=760)

    job_panel("dp_job", "DP-SGD step", show_dp)

# --- PATE ---------------------------------------------------------------------------------------------------------
with tab_pate, ui.user_errors():
    st.markdown("Teachers train on **disjoint** parts of the private data; a noisy vote of the teachers labels "
                "public inputs; only the student trained on those labels is released. Confident-GNMax answers "
                "only when the teachers agree, which is what keeps ε low.")
    c1, c2, c3 = st.columns(3)
    with c1:
        pate_data = data_choice("pate_data")
        pate_teachers = int(st.number_input("Teachers", 2, 250, 10, key="pate_teachers"))
        pate_agg = st.selectbox("Aggregator", AGGREGATORS.names()[::-1], key="pate_agg", format_func=AGGREGATORS.title)
    with c2:
        pate_sigma = st.number_input("σ (Gaussian vote noise)", 0.1, 200.0, 2.0, key="pate_sigma")
        pate_gamma = st.number_input("γ (LNMax: Laplace scale 1/γ)", 0.001, 10.0, 0.5, key="pate_gamma")
        pate_t = st.number_input("Threshold T (Confident)", 0.0, 250.0, 6.0, key="pate_t")
        pate_s1 = st.number_input("σ1 (threshold noise)", 0.1, 200.0, 2.0, key="pate_s1")
    with c3:
        pate_queries = int(st.number_input("Queries (public inputs labelled)", 1, 5000, 200, key="pate_queries"))
        pate_epochs = int(st.number_input("Teacher epochs", 1, 200, 10, key="pate_epochs"))
        pate_pseudo = st.checkbox("Semi-supervised student (pseudo-labels ≥ 0.9)", value=True, key="pate_pseudo")
        pate_kind = st.selectbox("Teachers and student", TEACHERS.names(), key="pate_kind", format_func=TEACHERS.title,
                                 help="scatter-linear: logistic regression on fixed ScatterNet features (more "
                                 "accurate from few examples, so the teachers agree more and ε drops)")
    running = job_running("pate_job")
    if st.button("Run PATE", type="primary", disabled=running, key="pate_run"):
        from patchlab.privacy.pate import PATEConfig

        d = load_data(pate_data)
        cfg = PATEConfig(teachers=pate_teachers, aggregator=pate_agg, sigma=float(pate_sigma),
                         gamma=float(pate_gamma), threshold=float(pate_t), sigma1=float(pate_s1),
                         queries=min(pate_queries, len(d.public)), model=default_model(d.size),
                         teacher_epochs=pate_epochs, student_epochs=20, pseudo_label=0.9 if pate_pseudo else 0.0,
                         workers=1, teacher=pate_kind)
        cfg.validate(len(d.private), len(d.public))

        def work(progress, stop):
            from patchlab.privacy.pate import run_pate
            from patchlab.privacy.plots import pate_figure

            res = run_pate(d, cfg, progress=progress, stop=stop)
            return {"summary": res.summary(), "figure": png(pate_figure(res.analysis, res.counts)), "data": d.source}

        start_job("pate_job", "pate", work)

    def show_pate(r):
        s = r["summary"]
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Student accuracy", f"{s['accuracy']:.1%}", help=f"{s['n']} test digits")
        m2.metric("Answered", f"{s['answered']}/{s['queries']}", help=f"label accuracy {s['label_accuracy']:.1%}")
        m3.metric("ε (data-dependent)", f"{s['epsilon']:.3f}", help=f"δ = {s['delta']:g}")
        m4.metric("ε (data-independent)", f"{s['epsilon_data_independent']:.3f}")
        st.caption(f"{r['data']}: {s['teachers']} teachers of {s['sizes']['per_teacher']} examples, mean teacher "
                   f"accuracy {s['teacher_accuracy_mean']:.1%}, plurality vote {s['ensemble_accuracy']:.1%} · "
                   f"{s['pseudo_labelled']} pseudo-labels · {s['seconds']:.0f} s. The data-dependent ε is computed "
                   "from the private votes; publishing it privately needs smooth sensitivity (not implemented).")
        st.image(r["figure"], width=760)

    job_panel("pate_job", "PATE stage", show_pate)

# --- membership inference -----------------------------------------------------------------------------------------
with tab_mia, ui.user_errors():
    st.markdown("Train several models on random halves of a pool; each one in turn is the target, the others are "
                "the attacker's shadow models. LiRA compares the target's confidence on an example with the "
                "shadows that did and did not train on it. Against a DP model, no attack may beat the dashed bound.")
    c1, c2, c3 = st.columns(3)
    with c1:
        mia_data = data_choice("mia_data")
        mia_trainer = st.radio("Models", ["non-private (overfit)", "DP-SGD"], key="mia_trainer", horizontal=True)
    with c2:
        mia_shadows = int(st.number_input("Shadow models", 2, 64, 4, key="mia_shadows"))
        mia_pool = int(st.number_input("Pool (examples)", 20, 6000, 400, key="mia_pool"))
    with c3:
        mia_eps = st.select_slider("DP-SGD target ε", [0.5, 1.0, 2.0, 4.0, 8.0], 2.0, key="mia_eps")
        mia_epochs = int(st.number_input("Epochs per model", 1, 300, 30, key="mia_epochs"))
    running = job_running("mia_job")
    if st.button("Attack", type="primary", disabled=running, key="mia_run"):
        from patchlab.privacy.mia import MIAConfig

        d = load_data(mia_data)
        dp = mia_trainer == "DP-SGD"
        cfg = MIAConfig(shadows=mia_shadows, pool=min(mia_pool, len(d.private)), trainer="dpsgd" if dp else "fit",
                        model="logreg" if dp else "mlp", epochs=mia_epochs, lr=2.0 if dp else 3e-3,
                        batch_size=100 if dp else 64, target_epsilon=float(mia_eps), workers=1)
        cfg.validate(len(d.private))

        def work(progress, stop):
            from patchlab.privacy.mia import run_mia
            from patchlab.privacy.plots import roc_figure

            res = run_mia(d.private, cfg, test=d.test, progress=progress, stop=stop)
            bugs = {k: v for k, v in res.bound_violations.items() if v}
            title = f"{cfg.shadows} shadows · " + (f"DP-SGD ε = {res.epsilon:.2f}" if dp else "non-private")
            return {"summary": res.summary(), "bugs": bugs,
                    "figure": png(roc_figure(res.attacks, res.epsilon, cfg.delta, title, bugs))}

        start_job("mia_job", "mia", work)

    def show_mia(r):
        import pandas as pd

        s = r["summary"]
        if r["bugs"]:
            st.error(f"Bug: ROC points above the (ε, δ) bound for {', '.join(r['bugs'])}: this training is not "
                     "(ε, δ)-DP as accounted.", icon=":material/bug_report:")
        m1, m2, m3 = st.columns(3)
        m1.metric("Train accuracy", f"{s['train_accuracy']:.1%}")
        m2.metric("Test accuracy", f"{s['test_accuracy']:.1%}")
        if s["epsilon"] is not None:
            m3.metric("ε of each model", f"{s['epsilon']:.3f}", help=f"highest AUC any attack may reach: "
                      f"{s['auc_bound']:.3f}")
        rows = [{"attack": k, "AUC": v["auc"], "TPR @ 0.1% FPR": v["tpr_at_0.1%"], "TPR @ 1% FPR": v["tpr_at_1%"]}
                for k, v in s["attacks"].items()]
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="mia_table",
                     column_config={c: st.column_config.NumberColumn(format="percent")
                                    for c in ("TPR @ 0.1% FPR", "TPR @ 1% FPR")})
        st.caption(f"{s['n']} guesses ({s['shadows'] + 1} targets × {s['pool']} examples) · {s['seconds']:.0f} s")
        st.image(r["figure"], width=760)

    job_panel("mia_job", "models trained", show_mia)

# --- ε calculator -------------------------------------------------------------------------------------------------
with tab_eps, ui.user_errors():
    st.markdown("The ε that DP-SGD settings spend, by our RDP accountant and by Opacus's RDP and PRV accountants.")
    c1, c2, c3, c4 = st.columns(4)
    sigma = c1.number_input("Noise multiplier σ", 0.1, 50.0, 1.1, key="eps_sigma")
    batch = c2.number_input("Batch size", 1, 100_000, 256, key="eps_batch")
    n = c3.number_input("Training examples", 1, 10_000_000, 60_000, key="eps_n")
    epochs = c4.number_input("Epochs of training", 0.1, 1000.0, 60.0, key="eps_epochs")
    if st.button("Compute ε", key="eps_run"):
        import math

        from patchlab.privacy.dpsgd import epsilon_of
        from patchlab.privacy.rdp import dpsgd_epsilon

        q = min(1.0, batch / n)
        steps = int(math.ceil(epochs / q))
        row = {"steps": steps, "q": q, "ours": dpsgd_epsilon(sigma, q, steps, 1e-5),
               "opacus_rdp": epsilon_of([(sigma, q, steps)], 1e-5, "rdp")}
        try:
            row["opacus_prv"] = epsilon_of([(sigma, q, steps)], 1e-5, "prv")
        except Exception:  # noqa: BLE001 - PRV's discretisation fails at large ε; the RDP numbers stand
            row["opacus_prv"] = None
        st.session_state["eps_result"] = row
    row = st.session_state.get("eps_result")
    if row:
        m1, m2, m3 = st.columns(3)
        m1.metric("ε (ours, RDP)", f"{row['ours']:.4f}")
        m2.metric("ε (Opacus RDP)", f"{row['opacus_rdp']:.4f}")
        m3.metric("ε (Opacus PRV)", "failed" if row["opacus_prv"] is None else f"{row['opacus_prv']:.4f}")
        st.caption(f"q = {row['q']:.5f}, {row['steps']} steps, δ = 1e-5")
