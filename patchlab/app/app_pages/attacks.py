"""Digital attacks: attack one photo with any patchlab attack and see what changed; the four classic demos."""

import streamlit as st

from patchlab.app import ui
from patchlab.app.uploads import IMAGE_TYPES, read_uploaded_image

st.title("Digital attacks")
st.caption("Small, carefully chosen pixel changes that flip an ImageNet classifier. Every number below is "
           "computed now by `patchlab.attacks` on the chosen model.")


@st.cache_data(show_spinner=False, max_entries=8)
def builtin_photo(name: str):
    from patchlab.data import load_sample

    return load_sample(name).image


@st.cache_data(show_spinner="Running the demo…", max_entries=16)
def run_demo(kind: str, model_name: str, params: tuple) -> tuple[bytes, dict]:
    """A classic demo's figure (PNG bytes) and numbers; cached across sessions (deterministic)."""
    import io

    from patchlab.attacks.demos import run_demo as run, uses_model

    result = run(kind, ui.get_model(model_name) if uses_model(kind) else None, **dict(params))
    buf = io.BytesIO()
    result.figure.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    data = {k: v for k, v in result.data.items() if not hasattr(v, "shape")}
    return buf.getvalue(), data


attack_tab, demo_tab = st.tabs(["Attack a photo", "Classic demos"])

with attack_tab, ui.user_errors():
    from patchlab.attacks import ATTACKS
    from patchlab.data import sample_names

    left, right = st.columns([1, 3], gap="large")
    with left:
        source = st.radio("Photo", ["Built-in", "Upload"], horizontal=True, key="atk_source")
        if source == "Built-in":
            sample = st.selectbox("Built-in photo", sample_names(), key="atk_sample")
            image, image_name = builtin_photo(sample), sample
        else:
            up = st.file_uploader("Your photo", type=list(IMAGE_TYPES), key="atk_upload")
            image, image_name = (read_uploaded_image(up), up.name.rsplit(".", 1)[0]) if up else (None, None)
        models = ui.available_models()
        model_name = st.selectbox("Model", models, index=models.index("efficientnet_lite0"), key="atk_model")
        names = [n for n, c in ATTACKS.items() if not c.universal]  # a universal perturbation needs a set of images
        attack_name = st.selectbox("Attack", names, index=names.index("pgd"), format_func=ATTACKS.title,
                                   key="atk_name")
        cls = ATTACKS.get(attack_name)
        kwargs = {}
        if cls.uses_eps:
            if cls.norm == "linf":
                eps255 = st.slider("ε (L∞, in 1/255 steps)", 0.5, 32.0, 4.0, 0.5, key="atk_eps",
                                   help="Largest change of any pixel value, out of 255")
                kwargs["eps"] = eps255 / 255
            else:
                kwargs["eps"] = st.slider("ε (L2 radius)", 0.05, 10.0, 1.0, 0.05, key="atk_eps_l2")
        if "steps" in cls.options():
            kwargs["steps"] = int(st.number_input("Steps", 1, 200, 10, key="atk_steps"))
        if cls.supports_targeted and attack_name != "ll":
            classes = ["(untargeted)"] + ui.class_names()
            target = st.selectbox("Target class", classes, key="atk_target",
                                  help="Untargeted: any wrong class. Targeted: make the model say this class.")
            if target != "(untargeted)":
                kwargs["target"] = target
        run = st.button("Run attack", type="primary", disabled=image is None, key="atk_run")

    if run and image is not None:
        from patchlab.attacks import make_attack
        from patchlab.models import preprocess

        model = ui.get_model(model_name)
        x = preprocess(image, model).unsqueeze(0)
        bar = st.progress(0.0, text="Attacking…")
        attack = make_attack(attack_name, model, progress=lambda s, t, m: bar.progress(
            min(1.0, s / max(t, 1)), text=f"step {s}/{t}"), **kwargs)
        result = attack(x, None)  # untargeted = away from the model's own prediction (no label leaking)
        probs = model.predict(x)[0].cpu()
        adv_probs = model.predict(result.adv)[0].cpu()
        bar.empty()
        st.session_state["atk_result"] = {
            "x": x[0].cpu(), "adv": result.adv[0].detach().cpu(), "probs": probs, "adv_probs": adv_probs,
            "success": bool(result.success[0]), "linf": float(result.linf[0]), "l2": float(result.l2[0]),
            "queries": int(result.queries), "attack": ATTACKS.title(attack_name), "model": model_name,
            "image_name": image_name, "target": None if result.target is None else int(result.target[0]),
            "eps": getattr(attack, "eps", None)}

    res = st.session_state.get("atk_result")
    with right:
        if res is None:
            st.info("Pick a photo and an attack, then press **Run attack**.")
        else:
            labels = ui.class_names()
            before, after = int(res["probs"].argmax()), int(res["adv_probs"].argmax())
            verdict = f"**{labels[before]}** ({res['probs'][before]:.0%}) → **{labels[after]}** ({res['adv_probs'][after]:.0%})"
            if res["success"]:
                st.success(f"Attack succeeded: {verdict}", icon=":material/check_circle:")
            else:
                st.warning(f"Attack did not succeed: {verdict}", icon=":material/cancel:")
            from patchlab.attacks.demos import perturbation_view

            view, amp = perturbation_view(res["adv"] - res["x"])
            c1, c2, c3 = st.columns(3)
            with c1:
                st.image(ui.to_display(res["x"]), caption="Original", width="stretch")
                ui.show_topk(res["probs"], labels, highlight=res["target"], key="atk_top_clean")
            with c2:
                st.image(ui.to_display(view), caption=f"Perturbation (amplified ×{amp:.0f})", width="stretch")
                st.metric("L∞ distance", f"{res['linf'] * 255:.2f} / 255")
                st.metric("L2 distance", f"{res['l2']:.3f}")
                st.caption(f"{res['attack']} on {res['model']} · {res['queries']} gradient evaluations")
            with c3:
                st.image(ui.to_display(res["adv"]), caption="Adversarial", width="stretch")
                ui.show_topk(res["adv_probs"], labels, highlight=res["target"], key="atk_top_adv")
                adv_png = ui.png_bytes(res["adv"], kind="adversarial")
                st.download_button("Download adversarial PNG", adv_png, type="primary",
                                   file_name=ui.download_name(f"{res['image_name']}_{res['attack']}", "adversarial",
                                                              adv_png), mime="image/png", key="atk_download")

with demo_tab, ui.user_errors():
    st.caption("The classic demonstrations from Goodfellow et al. (2014) and Kurakin et al. (2016), run live.")
    demo_model = st.selectbox("Model for the demos", ui.available_models(), key="demo_model")
    from patchlab.attacks.demos import DEMOS

    demos_spec = [  # what each demo shows, and its quick settings for the page
        ("panda", "An imperceptible step along the gradient's sign flips a confident prediction.", (("eps", 0.007),)),
        ("linear", "Logistic regression on digits: a small ε per pixel adds up over every pixel.", (("eps", 0.2),)),
        ("logits", "Logits along the gradient's sign are nearly linear: adversarial inputs fill wide regions, not "
                   "pockets.", (("points", 21),)),
        ("airplanes", "A targeted iterative attack turns every built-in photo into an airliner.", (("steps", 10),)),
    ]
    for kind, blurb, params in demos_spec:
        with st.expander(DEMOS.title(kind), expanded=st.session_state.get(f"demo_{kind}_shown", False)):
            st.write(blurb)
            if st.button("Run", key=f"demo_{kind}_run"):
                st.session_state[f"demo_{kind}_shown"] = True
            if st.session_state.get(f"demo_{kind}_shown"):
                png, data = run_demo(kind, demo_model, params)
                st.image(png, width="stretch")
                with st.popover("Numbers behind the figure"):
                    st.json(data)
