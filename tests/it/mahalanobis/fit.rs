//! The streaming fit against a direct computation on real images, and
//! FGSM's step.

use super::*;

/// The first `n` images of the shared ImageNet val sample whose class has at
/// least `per_class` images there, at `size` px, with their labels.
fn val_images(shared: &Path, n: usize, per_class: usize, size: usize) -> (Vec<f32>, Vec<usize>) {
    let dir = shared.join("data/imagenet-val");
    let list = std::fs::read_to_string(dir.join("val_list.txt")).unwrap();
    let entries: Vec<(&str, usize)> = list
        .lines()
        .map(|line| {
            let (file, label) = line.split_once(' ').unwrap();
            (file, label.trim().parse().unwrap())
        })
        .collect();
    let mut counts = HashMap::new();
    for (_, l) in &entries {
        *counts.entry(*l).or_insert(0usize) += 1;
    }
    let spec = InputSpec::half(size);
    let (mut data, mut labels) = (vec![], vec![]);
    for (file, label) in entries
        .iter()
        .filter(|(_, l)| counts[l] >= per_class)
        .take(n)
    {
        data.extend(to_input(&load_rgb(&dir.join(file)).unwrap(), &spec));
        labels.push(*label);
    }
    (data, labels)
}

#[test]
fn streaming_fit_equals_a_direct_computation_on_real_images() {
    let Some(shared) = common::shared() else {
        return;
    };
    let m = tiny(&shared);
    // Classes with several images, so that the class-centred features span
    // something; 32 px keeps the tiny network quick.
    let (n, size) = (240, 32);
    let (data, labels) = val_images(&shared, n, 3, size);
    let dims = m.info().tap_dims.clone();
    let mut fit = GaussianFit::new(&dims, 1000, &Device::Cpu).unwrap();
    let mut feats: Vec<Vec<f64>> = vec![vec![]; dims.len()];
    let per = 3 * size * size;
    for (chunk, lab) in data.chunks(per * 64).zip(labels.chunks(64)) {
        let x = Tensor::from_vec(chunk.to_vec(), (lab.len(), 3, size, size), &Device::Cpu).unwrap();
        let (_, taps) = m.forward_taps(&x).unwrap();
        fit.add(&taps, lab).unwrap();
        for (l, t) in taps.iter().enumerate() {
            feats[l].extend(flat(t).iter().map(|&v| v as f64));
        }
    }
    let got = fit.finish().unwrap();
    let mut classes: Vec<usize> = labels.clone();
    classes.sort_unstable();
    classes.dedup();
    for (l, &d) in dims.iter().enumerate() {
        let g = &got[l];
        assert_eq!(g.classes, classes);
        // Two passes: class means, then the explicitly centred features.
        let k = classes.len();
        let mut mean = vec![0f64; k * d];
        let mut count = vec![0f64; k];
        for (i, lab) in labels.iter().enumerate() {
            let c = classes.binary_search(lab).unwrap();
            count[c] += 1.0;
            for j in 0..d {
                mean[c * d + j] += feats[l][i * d + j];
            }
        }
        for c in 0..k {
            for j in 0..d {
                mean[c * d + j] /= count[c];
            }
        }
        let centred: Vec<f64> = (0..n * d)
            .map(|t| {
                let c = classes.binary_search(&labels[t / d]).unwrap();
                feats[l][t] - mean[c * d + t % d]
            })
            .collect();
        let x = Tensor::from_vec(centred, (n, d), &Device::Cpu).unwrap();
        let cov = (x.t().unwrap().matmul(&x).unwrap() / n as f64).unwrap();
        let cov: Vec<f64> = cov.flatten_all().unwrap().to_vec1().unwrap();
        let close = |what: &str, a: &[f64], b: &[f64], tol: f64| {
            let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f64, f64::max);
            assert!(
                worst <= tol * scale,
                "layer {l} {what}: {worst:e} vs {scale:e}"
            );
        };
        close("means", &g.means, &mean, 1e-12);
        close("covariance", &g.covariance, &cov, 1e-10);

        // The pseudo-inverse: rank min(d, N - K) (class centring removes one
        // dimension per class) and the Moore-Penrose conditions.
        if d > 512 {
            continue; // keeps the test to seconds
        }
        let (p, rank) = pinvh(&g.covariance, d).unwrap();
        eprintln!("layer {l}: dim {d}, rank {rank}, N - K = {}", n - k);
        assert_eq!(rank, d.min(n - k), "layer {l} rank");
        let s = Tensor::from_vec(g.covariance.clone(), (d, d), &Device::Cpu).unwrap();
        let pt = Tensor::from_vec(p.clone(), (d, d), &Device::Cpu).unwrap();
        let sps: Vec<f64> = s
            .matmul(&pt)
            .unwrap()
            .matmul(&s)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let psp: Vec<f64> = pt
            .matmul(&s)
            .unwrap()
            .matmul(&pt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        close("S P S = S", &sps, &g.covariance, 1e-8);
        close("P S P = P", &psp, &p, 1e-8);
    }
}

#[test]
fn fgsm_steps_up_the_loss_by_exactly_the_step() {
    let Some(shared) = common::shared() else {
        return;
    };
    let m = tiny(&shared);
    let (data, _) = val_images(&shared, 2, 1, 32);
    let labels = [1usize, 3];
    let x = Tensor::from_vec(data, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let spec = InputSpec::half(32);
    let adv = mahalanobis::fgsm(m.as_ref(), &x, &labels, 0.05, FgsmClamp::None, &spec).unwrap();
    let delta = flat(&(&adv - &x).unwrap());
    assert!(delta.iter().all(|d| (d.abs() - 0.05).abs() < 1e-6));
    let target = Tensor::new(&[1u32, 3], &Device::Cpu).unwrap();
    let loss = |t: &Tensor| -> f32 {
        candle_nn::loss::cross_entropy(&m.forward(t).unwrap().logits, &target)
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    assert!(loss(&adv) > loss(&x));
    // The seed's clamp to [0, 1] in the normalized space.
    let unit = mahalanobis::fgsm(m.as_ref(), &x, &labels, 0.05, FgsmClamp::Unit, &spec).unwrap();
    let want: Vec<f32> = flat(&adv).iter().map(|v| v.clamp(0.0, 1.0)).collect();
    assert_eq!(flat(&unit), want);
}
