//! `effnet info` and `effnet config check`.

use anyhow::{Context, Result};
use effnet_config::{Architecture, EffnetConfig, Variant};
use serde_json::json;
use std::path::Path;

fn summary_json(a: &Architecture) -> serde_json::Value {
    json!({
        "variant": a.name,
        "width": a.width,
        "depth": a.depth,
        "resolution": a.resolution,
        "dropout": a.dropout,
        "params": a.param_count(),
        "macs": a.macs(a.resolution, a.resolution),
        "num_classes": a.num_classes,
        "stem_channels": a.stem_channels,
        "head_channels": a.head_channels,
        "blocks": a.num_blocks(),
        "activation": a.activation,
        "padding": a.padding,
        "bn_eps": a.bn_eps,
    })
}

fn print_table(archs: &[Architecture]) {
    println!(
        "{:<14} {:>6} {:>6} {:>6} {:>8} {:>7} {:>13} {:>9}",
        "variant", "width", "depth", "res", "dropout", "blocks", "params", "MACs"
    );
    for a in archs {
        println!(
            "{:<14} {:>6.3} {:>6.3} {:>6} {:>8.2} {:>7} {:>13} {:>8.3}B",
            a.name,
            a.width,
            a.depth,
            a.resolution,
            a.dropout,
            a.num_blocks(),
            group_thousands(a.param_count()),
            a.macs(a.resolution, a.resolution) as f64 / 1e9
        );
    }
}

fn group_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `effnet info [--variant V | --config F] [--json]`.
pub fn run_info(variant: Option<&str>, config: Option<&Path>, json: bool) -> Result<()> {
    let archs: Vec<Architecture> = match (variant, config) {
        (Some(v), _) => {
            let v: Variant = v.parse().map_err(|e: String| anyhow::anyhow!("--variant: {e}"))?;
            vec![Architecture::variant(v)]
        }
        (None, Some(path)) => {
            let cfg = EffnetConfig::load(path)?;
            vec![cfg.model.architecture().map_err(|e| e.in_file(path))?]
        }
        (None, None) => Variant::ALL.into_iter().map(Architecture::variant).collect(),
    };
    let simd = effnet_model::selected_isa().name();
    if json {
        let v: Vec<_> = archs
            .iter()
            .map(|a| {
                let mut s = summary_json(a);
                s["simd"] = simd.into();
                s
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_table(&archs);
        println!();
        println!("CPU kernels: {simd} (EFFNET_SIMD=avx2 or scalar runs a narrower instruction set)");
    }
    Ok(())
}

/// `effnet config check FILE [--json]`.
pub fn run_config_check(file: &Path, json: bool) -> Result<()> {
    let cfg = EffnetConfig::load(file)?;
    let arch = cfg.model.architecture().map_err(|e| e.in_file(file))?;
    if json {
        let out = json!({ "file": file, "config": cfg, "model": summary_json(&arch), "stages": arch.stages });
        println!("{}", serde_json::to_string_pretty(&out).context("serialising the config")?);
        return Ok(());
    }
    println!("{}: ok", file.display());
    println!();
    print_table(std::slice::from_ref(&arch));
    println!();
    println!(
        "stem {} ch, head {} ch, {} classes, activation {:?}, padding {:?}, BN eps {} momentum {} (TF convention)",
        arch.stem_channels,
        arch.head_channels,
        arch.num_classes,
        arch.activation,
        arch.padding,
        arch.bn_eps,
        cfg.model.bn_momentum
    );
    println!();
    println!(
        "{:<6} {:>6} {:>6} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6}",
        "stage", "in", "out", "repeats", "kernel", "stride", "expand", "se", "skip"
    );
    for (i, s) in arch.stages.iter().enumerate() {
        println!(
            "{:<6} {:>6} {:>6} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6}",
            i,
            s.in_channels,
            s.out_channels,
            s.repeats,
            s.kernel,
            s.stride,
            s.expand_ratio,
            s.se_ratio.map_or("-".to_string(), |r| r.to_string()),
            s.id_skip
        );
    }
    Ok(())
}
