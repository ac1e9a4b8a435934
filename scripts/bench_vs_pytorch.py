"""PyTorch's side of scripts/bench-vs-pytorch.sh: the same forward passes as
`gradnorm-tui bench` times, in eager PyTorch on the CPU (oneDNN), random
weights, no_grad, fixed thread count. Prints one JSON line per model.

BiT-S-R101x1 follows the paper's code (google-research/big_transfer,
bit_pytorch/models.py): StdConv2d standardizing its weight in every forward,
GroupNorm(32), pre-activation bottlenecks, the zero-pad + 3x3/2 max-pool root.
EfficientNet-Lite0 is a small definition of its own (MBConv blocks without
squeeze-excitation, ReLU6, BatchNorm in eval mode). ResNet-50 and ViT-B/16
are torchvision's own definitions (torchvision.models, no weights).
"""

import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class StdConv2d(nn.Conv2d):
    def forward(self, x):
        w = self.weight
        v, m = torch.var_mean(w, dim=[1, 2, 3], keepdim=True, unbiased=False)
        w = (w - m) / torch.sqrt(v + 1e-10)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def conv3x3(cin, cout, stride=1):
    return StdConv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(cin, cout, stride=1):
    return StdConv2d(cin, cout, kernel_size=1, stride=stride, padding=0, bias=False)


class PreActBottleneck(nn.Module):
    def __init__(self, cin, cout=None, cmid=None, stride=1):
        super().__init__()
        cout = cout or cin
        cmid = cmid or cout // 4
        self.gn1 = nn.GroupNorm(32, cin)
        self.conv1 = conv1x1(cin, cmid)
        self.gn2 = nn.GroupNorm(32, cmid)
        self.conv2 = conv3x3(cmid, cmid, stride)
        self.gn3 = nn.GroupNorm(32, cmid)
        self.conv3 = conv1x1(cmid, cout)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or cin != cout:
            self.downsample = conv1x1(cin, cout, stride)

    def forward(self, x):
        out = self.relu(self.gn1(x))
        residual = x
        if hasattr(self, "downsample"):
            residual = self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.gn2(out)))
        out = self.conv3(self.relu(self.gn3(out)))
        return out + residual


class ResNetV2(nn.Module):
    def __init__(self, block_units, wf, head_size=1000):
        super().__init__()
        self.root = nn.Sequential(
            StdConv2d(3, 64 * wf, kernel_size=7, stride=2, padding=3, bias=False),
            nn.ConstantPad2d(1, 0),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=0),
        )
        units, cin = [], 64 * wf
        for s, n in enumerate(block_units):
            cout, cmid = 256 * wf << s, 64 * wf << s
            for u in range(n):
                stride = 2 if (u == 0 and s > 0) else 1
                units.append(PreActBottleneck(cin if u == 0 else cout, cout, cmid, stride))
            cin = cout
        self.body = nn.Sequential(*units)
        self.before_head = nn.Sequential(nn.GroupNorm(32, 2048 * wf), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(2048 * wf, head_size, kernel_size=1, bias=True)

    def forward(self, x):
        x = self.before_head(self.body(self.root(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.head(x)[..., 0, 0]


def conv_bn(cin, cout, k, s, groups=1, act=True):
    layers = [
        nn.Conv2d(cin, cout, k, s, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    def __init__(self, cin, cout, k, s, expand):
        super().__init__()
        mid = cin * expand
        layers = [] if expand == 1 else [conv_bn(cin, mid, 1, 1)]
        layers += [conv_bn(mid, mid, k, s, groups=mid), conv_bn(mid, cout, 1, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.skip = s == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    # (expand, kernel, stride, channels out, repeats)
    STAGES = [
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    ]

    def __init__(self, num_classes=1000):
        super().__init__()
        layers, cin = [conv_bn(3, 32, 3, 2)], 32
        for e, k, s, c, r in self.STAGES:
            for i in range(r):
                layers.append(MBConv(cin, c, k, s if i == 0 else 1, e))
                cin = c
        layers.append(conv_bn(cin, 1280, 1, 1))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def timed(model, x, images, warmup):
    batch = x.shape[0]
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        runs = max(1, -(-images // batch))
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(runs):
            model(x)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return runs * batch / wall, cpu / (runs * batch)


def timed_odin(model, x, images, warmup, eps, temperature=1000.0):
    """ODIN as the paper's code runs it: forward, the input gradient of the
    cross-entropy to the predicted class at temperature T, the input moved
    by -eps * sign, a second forward (softmax max at T)."""
    batch = x.shape[0]

    def step():
        xi = x.clone().requires_grad_(True)
        logits = model(xi) / temperature
        loss = F.cross_entropy(logits, logits.argmax(1))
        (grad,) = torch.autograd.grad(loss, xi)
        with torch.no_grad():
            out = model(x - eps * torch.sign(grad)) / temperature
            return out.softmax(1).max(1).values

    for _ in range(warmup):
        step()
    runs = max(1, -(-images // batch))
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(runs):
        step()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return runs * batch / wall, cpu / (runs * batch)


def label_resnet_stages(model):
    """Runs each of a torchvision ResNet's stages under a profiler label
    (stage.stem, stage.layer1..4, stage.head), so the table has one row
    per stage to set beside our per-layer profile's."""
    from torch.profiler import record_function

    def wrap(mod, name):
        forward = mod.forward

        def labelled(*args, **kwargs):
            with record_function(name):
                return forward(*args, **kwargs)

        mod.forward = labelled

    for n in ["conv1", "bn1", "relu", "maxpool"]:
        wrap(getattr(model, n), "stage.stem")
    for n in ["layer1", "layer2", "layer3", "layer4"]:
        wrap(getattr(model, n), "stage." + n)
    for n in ["avgpool", "fc"]:
        wrap(getattr(model, n), "stage.head")


def main():
    p = argparse.ArgumentParser()
    p.add_argument(
        "--model",
        choices=["bit-s-r101x1", "efficientnet-lite0", "resnet50", "vit-b-16"],
        required=True,
    )
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--images", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--profile", action="store_true", help="print torch.profiler's table")
    p.add_argument("--odin", type=float, metavar="EPS", help="time ODIN (T=1000) instead")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.model == "bit-s-r101x1":
        model = ResNetV2([3, 4, 23, 3], 1)
    elif a.model == "efficientnet-lite0":
        model = EfficientNetLite0()
    else:
        import torchvision

        if a.model == "resnet50":
            model = torchvision.models.resnet50(weights=None)
        else:
            model = torchvision.models.vit_b_16(weights=None, image_size=a.image_size)
    model.eval()
    x = torch.randn(a.batch, 3, a.image_size, a.image_size)
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        if a.model == "resnet50":
            label_resnet_stages(model)

        with torch.no_grad():
            model(x)
            # Shapes recorded: each of a ResNet's layers is one (op, input
            # shape) row, to set beside our per-layer profile.
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                model(x)
        print(prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=28,
            max_shapes_column_width=90))
        stages = [e for e in prof.key_averages() if e.key.startswith("stage.")]
        for e in sorted(stages, key=lambda e: e.key):
            print(f"{e.key:<14} {e.cpu_time_total / 1e3 / a.batch:8.1f} CPU ms/img")
        return
    if a.odin is not None:
        for q in model.parameters():
            q.requires_grad_(False)
        img_s, cpu_s = timed_odin(model, x, a.images, a.warmup, a.odin)
    else:
        img_s, cpu_s = timed(model, x, a.images, a.warmup)
    print(
        json.dumps(
            {
                "framework": f"pytorch {torch.__version__}",
                "model": a.model,
                "image_size": a.image_size,
                "batch": a.batch,
                "threads": torch.get_num_threads(),
                "channels_last": a.channels_last,
                "odin_epsilon": a.odin,
                "mkldnn": torch.backends.mkldnn.is_available(),
                "forward_img_per_s": img_s,
                "cpu_s_per_img": cpu_s,
                "images": max(1, -(-a.images // a.batch)) * a.batch,
            }
        )
    )


if __name__ == "__main__":
    main()
