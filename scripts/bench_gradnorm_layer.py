"""The paper's GradNorm loop (deeplearning-wisc/gradnorm_ood, test_ood.py
`iterate_data_gradnorm`: batch 1, model.zero_grad(), outputs / T, the loss
with targets of ones, a full backward) reading one layer's weight gradient,
timed on random weights and random inputs: the PyTorch side of
`gradnorm-tui bench --methods gradnorm:layer=...` on the same machine.

Prints one JSON line: images per second over the timed images (after one
warm-up image) and the process's peak resident memory.

    python scripts/bench_gradnorm_layer.py --model BiT-S-R101x1 --size 480 \
        --layer body.block4.unit03.conv3 --paper-repo /tmp/gradnorm_ood
    python scripts/bench_gradnorm_layer.py --model resnet50 --size 224 --layer layer4.2.conv3

BiT comes from the paper's own resnetv2.py (a checkout given with
--paper-repo, never copied here), ResNet-50 from torchvision.
"""

import argparse
import json
import resource
import sys
import time

import torch


def model_of(name, paper_repo):
    if name.startswith("BiT-"):
        sys.path.insert(0, paper_repo)
        import resnetv2  # the paper's own model code

        return resnetv2.KNOWN_MODELS[name](head_size=1000)
    import torchvision

    return getattr(torchvision.models, name)(weights=None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--layer", required=True, help="the module whose .weight gradient is read")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--paper-repo", default="/tmp/gradnorm_ood")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = model_of(args.model, args.paper_repo).eval()
    param = dict(model.named_parameters())[args.layer + ".weight"]
    inputs = torch.randn(args.images + 1, 3, args.size, args.size)
    logsoftmax = torch.nn.LogSoftmax(dim=-1)
    temperature = 1.0
    scores = []
    start = None
    for i in range(inputs.shape[0]):
        if i == 1:  # the first image warms up the allocator and kernels
            start = time.perf_counter()
        x = inputs[i : i + 1]
        model.zero_grad()
        outputs = model(x) / temperature
        targets = torch.ones((1, outputs.shape[-1]))
        loss = torch.mean(torch.sum(-targets * logsoftmax(outputs), dim=-1))
        loss.backward()
        scores.append(param.grad.data.abs().sum().item())
    secs = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "model": args.model,
                "size": args.size,
                "layer": args.layer,
                "images": args.images,
                "threads": torch.get_num_threads(),
                "img_per_s": args.images / secs,
                "peak_rss_mib": peak_kib / 1024,
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
