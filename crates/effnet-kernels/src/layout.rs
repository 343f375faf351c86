//! The memory order of 4-D activations on Flex: contiguous `[n, c, h, w]` (NCHW) or
//! channels-last (`[n, h, w, c]` in memory, the logical shape still `[n, c, h, w]` with permuted
//! strides, as `x.permute([0, 3, 1, 2])` of an NHWC tensor would give). burn's own ops read
//! either; effnet's kernels pick the variant for the order their input is in, and produce the
//! same order (training on small maps runs channels-last: see `channels_last/`).

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Shape};

/// Where an activation's elements lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Nchw,
    Nhwc,
}

/// The strides of a channels-last tensor of logical shape `[n, c, h, w]`.
pub(crate) fn channels_last_strides([_, c, h, w]: [usize; 4]) -> Vec<isize> {
    vec![(h * w * c) as isize, 1, (w * c) as isize, c as isize]
}

fn dims4(x: &FlexTensor) -> Option<[usize; 4]> {
    let s = x.layout().shape();
    (s.num_dims() == 4).then(|| [s[0], s[1], s[2], s[3]])
}

/// Whether `x` is a dense channels-last 4-D tensor from offset 0 (dimensions of size 1, whose
/// stride no element depends on, may have any stride: a `[n, c, 1, 1]` map is channels-last and
/// NCHW at once).
pub(crate) fn is_channels_last(x: &FlexTensor) -> bool {
    let Some(d) = dims4(x) else { return false };
    let want = channels_last_strides(d);
    x.layout().start_offset() == 0
        && x.layout().strides().iter().zip(&want).zip(d).all(|((&got, &want), size)| size == 1 || got == want)
}

/// The order `x` is stored densely in, if either: channels-last when both hold (maps of one
/// pixel, where the channels-last kernels are the fast ones), `None` for any other layout (a
/// view, a broadcast).
pub(crate) fn order_of(x: &FlexTensor) -> Option<Order> {
    if is_channels_last(x) {
        Some(Order::Nhwc)
    } else if x.layout().contiguous_offsets().is_some_and(|(start, _)| start == 0) {
        Some(Order::Nchw)
    } else {
        None
    }
}

/// `x` as a dense tensor: as it is when it is dense in either order, else a contiguous copy.
pub(crate) fn dense(x: FlexTensor) -> FlexTensor {
    assert_eq!(x.dtype(), DType::F32, "effnet's Flex kernels are f32-only (the caller checks)");
    if order_of(&x).is_some() { x } else { x.to_contiguous() }
}

/// `x` densely in `order` (a transposing copy when it is in the other one).
pub(crate) fn in_order(x: FlexTensor, order: Order) -> FlexTensor {
    match order {
        Order::Nchw => crate::flex::contiguous(x),
        Order::Nhwc if is_channels_last(&x) => x,
        Order::Nhwc => {
            let d = dims4(&x).expect("a channels-last tensor is 4-D");
            let copy = x.permute(&[0, 2, 3, 1]).to_contiguous();
            FlexTensor::from_arc(copy.data_arc(), Layout::new(Shape::from(d), channels_last_strides(d), 0), DType::F32)
        }
    }
}

/// The elements of a dense tensor (see [`dense`]) in memory order.
pub(crate) fn elements(x: &FlexTensor) -> &[f32] {
    &x.storage::<f32>()[..x.layout().num_elements()]
}

/// Channels-last data (`[n, h, w, c]` in memory) as a tensor of the logical shape `[n, c, h, w]`.
pub(crate) fn channels_last_tensor(data: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    let layout = Layout::new(Shape::from(shape), channels_last_strides(shape), 0);
    FlexTensor::new(Bytes::from_elems(data), layout, DType::F32)
}

/// `data` (in memory order) as a tensor of `like`'s shape and order.
pub(crate) fn tensor_in(data: Vec<f32>, like: &FlexTensor, order: Order) -> FlexTensor {
    let shape = like.layout().shape().clone();
    match order {
        Order::Nchw => crate::flex::new_tensor(data, shape),
        Order::Nhwc => channels_last_tensor(data, [shape[0], shape[1], shape[2], shape[3]]),
    }
}
