//! The candle side of every kernel, written once: a [`Kernel`] computes on
//! contiguous f32 slices, and [`Op`] makes it a candle `CustomOp1/2/3` (the
//! storages unpacked and checked, the output vector moved into candle's
//! storage). CPU only, as before: `Op` has no `cuda_fwd`, so candle's
//! default "no cuda implementation" error stands, and the models call these
//! kernels only on the CPU (composed candle ops elsewhere).

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};

/// One input of a kernel: its f32 values (contiguous) and its layout.
#[derive(Clone, Copy)]
pub(super) struct In<'a> {
    pub x: &'a [f32],
    pub l: &'a Layout,
}

impl In<'_> {
    pub fn dims(&self) -> &[usize] {
        self.l.dims()
    }
}

/// What a backward pass gets: the forward inputs, output and its gradient.
pub(super) struct Bwd<'a, const N: usize> {
    pub args: [&'a Tensor; N],
    pub res: &'a Tensor,
    pub grad: &'a Tensor,
}

/// The inputs' gradients, None where there is none.
pub(super) type Grads<const N: usize> = Result<[Option<Tensor>; N]>;

/// A CPU kernel of `N` inputs and one f32 output.
pub(super) trait Kernel<const N: usize>: Send + Sync {
    /// The op's name for candle and for errors about its inputs.
    const NAME: &'static str;

    /// The output values and their shape.
    fn forward(&self, xs: [In<'_>; N]) -> Result<(Vec<f32>, Shape)>;

    /// The inputs' gradients. By default candle's "backward not supported"
    /// error, as before: the backward kernels run outside autograd (see
    /// [`gradient`]).
    fn backward(&self, _: Bwd<'_, N>) -> Grads<N> {
        Err(candle_core::Error::BackwardNotSupported { op: Self::NAME })
    }
}

/// A [`Kernel`] as a candle custom op.
pub(super) struct Op<K>(pub K);

/// The f32 data of a contiguous tensor.
fn f32_slice<'a>(s: &'a CpuStorage, l: &'a Layout, what: &str) -> Result<In<'a>> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what}: f32 only, got {:?}", s.dtype())
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(In { x: &v[a..b], l }),
        None => candle_core::bail!("{what}: non-contiguous input"),
    }
}

/// Running an [`Op`] of `N` inputs outside autograd.
pub(super) trait NoBwd<const N: usize> {
    fn run(&self, xs: [&Tensor; N]) -> Result<Tensor>;
}

/// candle's `CustomOp{1,2,3}` for an [`Op`] of as many inputs, and
/// [`NoBwd`]: the storages unpacked into slices, the output vector moved
/// (not copied) into candle's storage, the gradients into candle's tuple.
macro_rules! custom_op {
    ($trait:ident, $n:literal, $apply:ident, $grads:ty, $tuple:expr,
     $s0:ident $l0:ident $a0:ident $(, $s:ident $l:ident $a:ident)*) => {
        impl<K: Kernel<$n>> $trait for Op<K> {
            fn name(&self) -> &'static str {
                K::NAME
            }

            fn cpu_fwd(
                &self,
                $s0: &CpuStorage,
                $l0: &Layout,
                $($s: &CpuStorage, $l: &Layout,)*
            ) -> Result<(CpuStorage, Shape)> {
                let x0 = f32_slice($s0, $l0, K::NAME)?;
                let (out, shape) = self.0.forward([x0 $(, f32_slice($s, $l, K::NAME)?)*])?;
                Ok((CpuStorage::F32(out), shape))
            }

            fn bwd(
                &self,
                $a0: &Tensor,
                $($a: &Tensor,)*
                res: &Tensor,
                grad: &Tensor,
            ) -> Result<$grads> {
                let args = [$a0 $(, $a)*];
                self.0.backward(Bwd { args, res, grad }).map($tuple)
            }
        }

        impl<K: Kernel<$n>> NoBwd<$n> for Op<K> {
            fn run(&self, [$a0 $(, $a)*]: [&Tensor; $n]) -> Result<Tensor> {
                $a0.$apply($($a,)* self)
            }
        }
    };
}

custom_op!(CustomOp1, 1, apply_op1_no_bwd, Option<Tensor>, |[a]| a, s1 l1 a1);
custom_op!(
    CustomOp2, 2, apply_op2_no_bwd, (Option<Tensor>, Option<Tensor>), |[a, b]| (a, b),
    s1 l1 a1, s2 l2 a2
);
custom_op!(
    CustomOp3, 3, apply_op3_no_bwd, (Option<Tensor>, Option<Tensor>, Option<Tensor>),
    |[a, b, c]| (a, b, c), s1 l1 a1, s2 l2 a2, s3 l3 a3
);

/// A backward kernel `k` of `xs` (the output's gradient first), each made
/// contiguous (a no-op when it already is), outside autograd.
pub(super) fn gradient<const N: usize, K: Kernel<N>>(
    k: K,
    xs: [&Tensor; N],
) -> Result<Option<Tensor>>
where
    Op<K>: NoBwd<N>,
{
    let mut owned = xs.map(Tensor::clone);
    for t in &mut owned {
        *t = t.contiguous()?;
    }
    Ok(Some(Op(k).run(owned.each_ref())?))
}

/// Kernel `k` applied to `x` as contiguous f32, the result in `x`'s dtype
/// (the kernels are f32; other float dtypes run in f32).
pub(super) fn apply_f32(x: &Tensor, k: impl Kernel<1> + 'static) -> Result<Tensor> {
    x.to_dtype(DType::F32)?
        .contiguous()?
        .apply_op1(Op(k))?
        .to_dtype(x.dtype())
}
