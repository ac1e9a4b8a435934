"""The gradient detectors as their reference code runs them, timed on
torchvision's ResNet-50 (the other side of scripts/bench-detectors.sh).

- GradNorm: the paper's `iterate_data_gradnorm` (deeplearning-wisc/
  gradnorm_ood, test_ood.py): one image at a time, forward, the KL to the
  uniform distribution (targets of ones), backward, the L1 norm of the
  head's weight gradient.
- GAIA-A, GAIA-Z, NAC-UE, GROOD: the reference copies of
  tests/fixtures/gradient_detectors/make.py (GAIA-OOD's cal_method.py and
  hooks, ood_coverage's NAC, OpenOOD's grood.py with its per-image
  autograd.grad, the low-dimensional gradient method's pre_compute, class
  means, vmap per-sample gradients and knn on the head), imported from
  there, not copied again.

`--save DIR` instead writes the weights (seeded torchvision init) and a
list of `--fit-images` images labelled with this model's own predictions,
so that both sides load the same model and GROOD's index holds every fit
image. Prints one JSON line per method.
"""

import argparse
import importlib.util
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def reference():
    path = os.path.join(HERE, "..", "tests", "fixtures", "gradient_detectors", "make.py")
    spec = importlib.util.spec_from_file_location("make", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def preprocess(path, size):
    """Resize the short side to size / 0.875, centre crop, ImageNet mean/std."""
    img = Image.open(path).convert("RGB")
    short = round(size / 0.875)
    w, h = img.size
    scale = short / min(w, h)
    img = img.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    a = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    a = (a - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return torch.from_numpy(a.transpose(2, 0, 1).copy())


def save(model, args):
    os.makedirs(args.save, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(args.save, "resnet50.pth"))
    root = os.path.dirname(os.path.abspath(args.images_list))
    lines = [l.split()[0] for l in open(args.images_list) if l.strip()][: args.fit_images]
    x = torch.stack([preprocess(os.path.join(root, p), args.image_size) for p in lines])
    with torch.no_grad():
        pred = model(x).argmax(1).tolist()
    with open(os.path.join(args.save, "fit.txt"), "w") as f:
        for p, c in zip(lines, pred):
            f.write(f"{os.path.join(root, p)} {c}\n")
    torch.save(x, os.path.join(args.save, "fit_x.pt"))


def gradnorm_paper(model, x, num_classes=1000, temperature=1.0):
    confs = []
    logsoftmax = torch.nn.LogSoftmax(dim=-1)
    for i in range(x.shape[0]):
        inputs = x[i : i + 1].clone().requires_grad_(True)
        model.zero_grad()
        outputs = model(inputs) / temperature
        targets = torch.ones((inputs.shape[0], num_classes))
        loss = torch.mean(torch.sum(-targets * logsoftmax(outputs), dim=-1))
        loss.backward()
        confs.append(torch.sum(torch.abs(model.fc.weight.grad.data)).item())
    return confs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default="msp,gradnorm,gaia-a,gaia-z,nac-ue,grood,lowdim-grad")
    ap.add_argument("--dir", required=True, help="what --save wrote")
    ap.add_argument("--save", help="write the weights and the fit list here, then stop")
    ap.add_argument("--images-list", help="with --save: a list of images (first column)")
    ap.add_argument("--fit-images", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    if a.save:
        return save(model, a)
    model.load_state_dict(torch.load(os.path.join(a.dir, "resnet50.pth")))
    ref = reference()
    ref.keep_before_head(model, model.avgpool)
    x = torch.randn(a.batch, 3, a.image_size, a.image_size)
    fit_x = torch.load(os.path.join(a.dir, "fit_x.pt"))
    fit_labels = torch.tensor([int(l.split()[1]) for l in open(os.path.join(a.dir, "fit.txt"))])

    # What each method needs from the fit, made before the clock starts.
    estimators = {}
    with torch.no_grad():
        fit_logits = model(fit_x)
        fit_feats = model.before_head_data.reshape(fit_x.shape[0], -1)

    def nac_fit():
        states = ref.nac_states(model, "resnet", fit_x)
        for name, O, M, alpha in ref.NAC_LAYERS["resnet"]:
            est = ref.Estimator(states[name].shape[1], M=M, O=O, device="cpu")
            est.update(states[name])
            est.get_score()
            estimators[name] = est

    def nac(x):
        states = ref.nac_states(model, "resnet", x)
        layers = ref.NAC_LAYERS["resnet"]
        return sum(estimators[n].ood_test(states[n]) for n, *_ in layers) / len(layers)

    grood = ref.Grood(fit_logits.shape[1], fit_feats.shape[1], False)
    grood.update_prototype(fit_feats, fit_labels)
    grood.get_prototype_mean()
    index = None

    def grood_score(x):
        with torch.no_grad():
            logits = model(x)
        feats = model.before_head_data.reshape(x.shape[0], -1)
        q = torch.from_numpy(grood._compute_grad(logits, feats))
        return -(torch.cdist(q, index) ** 2).min(1).values

    lowdim_state = {}

    def lowdim_fit():
        # Their pre_compute and class means on the head (make.py's copies).
        net = ref.Energy_Model(ref.head_of(model)).eval()
        loader = [(fit_feats[i:i + 16], fit_labels[i:i + 16]) for i in range(0, len(fit_feats), 16)]
        z, i2 = ref.pre_compute(net, loader, "cpu")
        v = torch.cat([ref.cal_grad_per_class(net, loader, c, "NFK", z, i2, "cpu").unsqueeze(1)
                       for c in sorted(set(fit_labels.tolist()))], 1)
        v = v / torch.norm(v, dim=0).unsqueeze(0)

        def feat(h):
            return (ref.cal_fisher_vector(net, h, kernel="NFK", z_theta=z, I_2=i2).detach() @ v).numpy()

        lowdim_state.update(feat=feat, bank=feat(fit_feats))

    def lowdim(x):
        with torch.no_grad():
            model(x)
        feats = model.before_head_data.reshape(x.shape[0], -1)
        return ref.knn(lowdim_state["bank"], lowdim_state["feat"](feats), 10)

    def msp(x):
        with torch.no_grad():
            return model(x).softmax(1).max(1).values

    def gaia(fn):
        def run(x):
            hooks = ref.get_beforehead_hooks(model, "resnet")
            out = -fn(model, x, "cpu", hooks)
            for h in hooks:
                h.close()
            return out

        return run

    methods = {
        "msp": msp,
        "gradnorm": lambda x: gradnorm_paper(model, x),
        "gaia-a": gaia(ref.cal_grad_value),
        "gaia-z": gaia(ref.cal_zero),
        "nac-ue": nac,
        "grood": grood_score,
        "lowdim-grad": lowdim,
    }
    for key in a.methods.split(","):
        if key == "nac-ue" and not estimators:
            nac_fit()
        if key == "lowdim-grad" and not lowdim_state:
            lowdim_fit()
        if key == "grood" and index is None:
            index = torch.from_numpy(grood._compute_grad(fit_logits, fit_feats, fit_labels))
        fn = methods[key]
        fn(x)  # warm-up
        runs = max(1, -(-a.images // a.batch))
        t0 = time.perf_counter()
        for _ in range(runs):
            fn(x)
        wall = time.perf_counter() - t0
        print(json.dumps({"method": key, "img_per_s": runs * a.batch / wall, "batch": a.batch,
                          "framework": f"pytorch {torch.__version__}"}), flush=True)


if __name__ == "__main__":
    main()
