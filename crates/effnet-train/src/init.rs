//! The network a fresh run starts from: `train.init_weights` loaded into the built model, and
//! the fresh classifier initialised as `train.head_init` says.

use burn::prelude::*;
use effnet_config::{Architecture, ClassifierInit, HeadInit};
use effnet_model::{EfficientNet, WeightsError};
use std::path::Path;

/// Loads `init_weights` (when given) into `net`, built by [`crate::build_model`] with TF's head
/// init, and re-initialises the classifier when it is fresh (not taken from the checkpoint) and
/// `head_init` resolves to another init. Prints what it loaded, as `effnet train` reports it.
pub fn init_network(
    mut net: EfficientNet,
    arch: &Architecture,
    init_weights: Option<&Path>,
    head_init: HeadInit,
    device: &Device,
) -> Result<EfficientNet, WeightsError> {
    let mut over_pretrained = false;
    if let Some(path) = init_weights {
        let report = net.load_weights(path, arch)?;
        eprintln!("initialised from {} ({} tensors, {} layout)", path.display(), report.applied, report.layout);
        report.notes.iter().for_each(|n| eprintln!("{n}"));
        let Some((from, to)) = report.classifier_reset else {
            return Ok(net); // the checkpoint's classifier fits: nothing is fresh
        };
        over_pretrained = true;
        // `tf`, `torch` or `zeros`, as train.head_init spells them.
        let init = format!("{:?}", head_init.resolve(true)).to_lowercase();
        eprintln!("note: new {to}-class classifier, {init} init (the checkpoint has {from} classes)");
    }
    let init = head_init.resolve(over_pretrained);
    if init != ClassifierInit::Tf {
        net = net.with_num_classes(arch.num_classes, init, device);
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use effnet_config::ModelConfig;

    fn arch(classes: usize) -> Architecture {
        let text = format!("variant = \"custom\"\nwidth = 0.25\ndepth = 0.25\nnum_classes = {classes}\n");
        toml::from_str::<ModelConfig>(&text).unwrap().architecture().unwrap()
    }

    /// (max |w|, max |b|) of the classifier.
    fn extremes(net: &EfficientNet) -> (f32, f32) {
        let max = |t: Tensor<1>| t.abs().max().into_scalar::<f32>();
        (max(net.classifier.weight.val().flatten(0, 1)), max(net.classifier.bias.as_ref().unwrap().val()))
    }

    /// A 3-class net started from a 5-class checkpoint (`pretrained`) or from scratch.
    fn start(head_init: HeadInit, pretrained: bool) -> EfficientNet {
        let dev = Device::flex();
        let file = std::env::temp_dir().join(format!("effnet-init-{}-{head_init:?}.safetensors", std::process::id()));
        EfficientNet::new(&arch(5), &dev).save_weights(&file).unwrap();
        let weights = pretrained.then_some(file.as_path());
        let net = init_network(EfficientNet::new(&arch(3), &dev), &arch(3), weights, head_init, &dev).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(net.num_classes(), 3);
        net
    }

    #[test]
    fn auto_head_init_is_tf_from_scratch_and_torch_over_pretrained_weights() {
        let features = EfficientNet::new(&arch(3), &Device::flex()).classifier.weight.dims()[0] as f32;
        // From scratch: TF's U(±1/√3) with zero bias.
        let (w, b) = extremes(&start(HeadInit::Auto, false));
        assert!(w > 1.0 / features.sqrt() && w <= 1.0 / 3f32.sqrt(), "{w}");
        assert_eq!(b, 0.0);
        // A fresh head over a checkpoint: torch's U(±1/√features) for weight and bias.
        let (w, b) = extremes(&start(HeadInit::Auto, true));
        assert!(w <= 1.0 / features.sqrt() && b > 0.0 && b <= 1.0 / features.sqrt(), "{w} {b}");
    }

    #[test]
    fn an_explicit_head_init_applies_from_scratch_too() {
        assert_eq!(extremes(&start(HeadInit::Zeros, false)), (0.0, 0.0));
        assert_eq!(extremes(&start(HeadInit::Zeros, true)), (0.0, 0.0));
        let (_, b) = extremes(&start(HeadInit::Tf, true));
        assert_eq!(b, 0.0);
    }
}
