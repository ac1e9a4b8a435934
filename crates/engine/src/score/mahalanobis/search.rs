//! The seed's tuning: FGSM images and the magnitude search by validation FPR95.

use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::score::logistic::{self, Logistic};
use candle_core::{Tensor, Var};

/// The tuned regression and how it was chosen.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Tuned {
    pub magnitude: f64,
    pub regression: Logistic,
    /// Inverse regularization strength the cross-validation chose.
    pub c: f64,
    /// Validation FPR95 of every magnitude tried, in order.
    pub trials: Vec<Trial>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Trial {
    pub magnitude: f64,
    pub c: f64,
    pub regression: Logistic,
    pub val_fpr95: f64,
}

/// Layer scores of one image set for every magnitude: `rows[k][i]` holds the
/// L layer scores of image i at magnitude k.
pub type ScoreTable = Vec<Vec<Vec<f64>>>;

/// The seed's selection: for each magnitude, a cross-validated logistic
/// regression on the training rows (ID label 0, OOD label 1), then FPR95 of
/// -P(OOD) on the validation rows; the lowest FPR95 wins, the first on ties.
pub fn choose_magnitude(
    magnitudes: &[f64],
    train_id: &ScoreTable,
    train_ood: &ScoreTable,
    val_id: &ScoreTable,
    val_ood: &ScoreTable,
) -> Result<Tuned> {
    let mut best: Option<(f64, usize)> = None;
    let mut trials = Vec::with_capacity(magnitudes.len());
    for (k, &m) in magnitudes.iter().enumerate() {
        let mut rows = train_id[k].clone();
        rows.extend(train_ood[k].iter().cloned());
        let y: Vec<bool> = (0..rows.len()).map(|i| i >= train_id[k].len()).collect();
        if train_id[k].is_empty() || train_ood[k].is_empty() {
            return Err(Error::Invalid(
                "Mahalanobis tuning needs training images on both sides".into(),
            ));
        }
        let cv = logistic::fit_cv(&rows, &y)?;
        let score = |r: &Vec<f64>| -cv.model.probability(r);
        let id: Vec<f64> = val_id[k].iter().map(score).collect();
        let ood: Vec<f64> = val_ood[k].iter().map(score).collect();
        if id.is_empty() || ood.is_empty() {
            return Err(Error::Invalid(
                "Mahalanobis tuning needs validation images on both sides".into(),
            ));
        }
        let fpr = gradnorm_core::metrics::fpr_at_95_tpr(&id, &ood);
        if best.is_none_or(|(b, _)| fpr < b) {
            best = Some((fpr, k));
        }
        trials.push(Trial {
            magnitude: m,
            c: cv.c,
            regression: cv.model,
            val_fpr95: fpr,
        });
    }
    let (_, k) = best.ok_or_else(|| Error::Invalid("no magnitude to try".into()))?;
    Ok(Tuned {
        magnitude: trials[k].magnitude,
        regression: trials[k].regression.clone(),
        c: trials[k].c,
        trials,
    })
}

/// How the FGSM images of the tuning are clamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FgsmClamp {
    /// To [0, 1] in the normalized input space, as the seed does (it cuts
    /// off every negative input value, i.e. the darker half of each channel).
    Unit,
    /// To the range real images occupy after normalization.
    Valid,
    None,
}

/// x_adv = clamp(x + step * sign(d CE(f(x), y) / dx)) with sign(0) = +1.
/// `lo`/`hi` are per-channel bounds for `FgsmClamp::Valid`.
pub fn fgsm(
    model: &dyn Classifier,
    x: &Tensor,
    labels: &[usize],
    step: f64,
    clamp: FgsmClamp,
    input: &crate::model::InputSpec,
) -> Result<Tensor> {
    let xv = Var::from_tensor(x)?;
    let out = model.forward(xv.as_tensor())?;
    let target = Tensor::from_vec(
        labels.iter().map(|&l| l as u32).collect::<Vec<u32>>(),
        labels.len(),
        x.device(),
    )?;
    let loss = candle_nn::loss::cross_entropy(&out.logits, &target)?;
    let grads = loss.backward()?;
    let grad = grads
        .get(xv.as_tensor())
        .ok_or_else(|| Error::Invalid("FGSM: no gradient reached the input".into()))?;
    let adv = crate::score::odin::perturb(x, grad, step)?;
    Ok(match clamp {
        FgsmClamp::Unit => adv.clamp(0f32, 1f32)?,
        FgsmClamp::None => adv,
        FgsmClamp::Valid => {
            let lo: Vec<f32> = (0..3).map(|c| -input.mean[c] / input.std[c]).collect();
            let hi: Vec<f32> = (0..3)
                .map(|c| (1.0 - input.mean[c]) / input.std[c])
                .collect();
            let lo = Tensor::from_vec(lo, (1, 3, 1, 1), x.device())?;
            let hi = Tensor::from_vec(hi, (1, 3, 1, 1), x.device())?;
            adv.broadcast_maximum(&lo)?.broadcast_minimum(&hi)?
        }
    })
}
