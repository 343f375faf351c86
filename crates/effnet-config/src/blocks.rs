//! Block strings (`r1_k3_s11_e1_i32_o16_se0.25`) as tensorflow/tpu's `BlockDecoder` reads them.

use std::fmt;
use std::str::FromStr;

/// The seven stages of EfficientNet-B0 (`_DEFAULT_BLOCKS_ARGS` in `efficientnet_builder.py`).
/// Every B*, L2 and Lite* variant scales this list.
pub const DEFAULT_BLOCKS: [&str; 7] = [
    "r1_k3_s11_e1_i32_o16_se0.25",
    "r2_k3_s22_e6_i16_o24_se0.25",
    "r2_k5_s22_e6_i24_o40_se0.25",
    "r3_k3_s22_e6_i40_o80_se0.25",
    "r3_k5_s11_e6_i80_o112_se0.25",
    "r4_k5_s22_e6_i112_o192_se0.25",
    "r1_k3_s11_e6_i192_o320_se0.25",
];

/// One decoded block string: a stage before width/depth scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockArgs {
    /// `r`: number of blocks in the stage.
    pub repeats: usize,
    /// `k`: depthwise kernel size.
    pub kernel: usize,
    /// `s`: stride of the first block (TF writes both axes: `s22`).
    pub stride: usize,
    /// `e`: expansion ratio of the 1×1 expand conv (1 = no expand conv).
    pub expand_ratio: usize,
    /// `i`: input channels.
    pub input_filters: usize,
    /// `o`: output channels.
    pub output_filters: usize,
    /// `se`: squeeze-excitation ratio relative to the block's *input* channels.
    pub se_ratio: Option<f64>,
    /// `false` when the string holds `noskip`: no residual connection in this stage.
    pub id_skip: bool,
}

/// A block string that does not decode.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("block string `{string}`: {reason}")]
pub struct BlockStringError {
    pub string: String,
    pub reason: String,
}

impl FromStr for BlockArgs {
    type Err = BlockStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| BlockStringError { string: s.to_string(), reason };
        let (mut r, mut k, mut st, mut e, mut i, mut o, mut se) = (None, None, None, None, None, None, None);
        let mut id_skip = true;
        for op in s.split('_') {
            if op == "noskip" {
                id_skip = false;
                continue;
            }
            // TF splits each op at its first digit: `se0.25` -> (`se`, `0.25`).
            let at = op.find(|c: char| c.is_ascii_digit()).ok_or_else(|| err(format!("option `{op}` has no value")))?;
            let (key, value) = op.split_at(at);
            let int = |what: &str| -> Result<usize, BlockStringError> {
                value.parse::<usize>().map_err(|_| err(format!("{what} `{value}` is not a whole number")))
            };
            match key {
                "r" => r = Some(int("repeats")?),
                "k" => k = Some(int("kernel size")?),
                "s" => {
                    let b = value.as_bytes();
                    if b.len() != 2 || !b.iter().all(u8::is_ascii_digit) {
                        return Err(err(format!("strides `s{value}` must be a pair of digits like s11 or s22")));
                    }
                    if b[0] != b[1] {
                        return Err(err(format!("strides `s{value}`: only equal strides are supported")));
                    }
                    st = Some((b[0] - b'0') as usize);
                }
                "e" => e = Some(int("expand ratio")?),
                "i" => i = Some(int("input filters")?),
                "o" => o = Some(int("output filters")?),
                "se" => {
                    let v: f64 = value.parse().map_err(|_| err(format!("se ratio `{value}` is not a number")))?;
                    if !(v > 0.0 && v <= 1.0) {
                        return Err(err(format!("se ratio {v} must be in (0, 1]")));
                    }
                    se = Some(v);
                }
                // TF's defaults for conv type, fused conv and space-to-depth are accepted as written.
                "c" | "f" | "d" if value == "0" => {}
                "c" | "f" | "d" | "a" | "cc" => {
                    return Err(err(format!("option `{op}` (EdgeTPU/CondConv/X blocks) is not supported")));
                }
                _ => return Err(err(format!("unknown option `{op}`"))),
            }
        }
        let need = |v: Option<usize>, key: &str| v.ok_or_else(|| err(format!("missing `{key}`")));
        let args = BlockArgs {
            repeats: need(r, "r")?,
            kernel: need(k, "k")?,
            stride: need(st, "s")?,
            expand_ratio: need(e, "e")?,
            input_filters: need(i, "i")?,
            output_filters: need(o, "o")?,
            se_ratio: se,
            id_skip,
        };
        if args.repeats == 0 || args.kernel == 0 || args.expand_ratio == 0 {
            return Err(err("r, k and e must be at least 1".into()));
        }
        if args.kernel.is_multiple_of(2) {
            return Err(err(format!("kernel size {} must be odd", args.kernel)));
        }
        if !(1..=2).contains(&args.stride) {
            return Err(err(format!("stride {} must be 1 or 2", args.stride)));
        }
        if args.input_filters == 0 || args.output_filters == 0 {
            return Err(err("i and o must be at least 1".into()));
        }
        Ok(args)
    }
}

impl fmt::Display for BlockArgs {
    /// Encodes in the same order as tensorflow/tpu's `_encode_block_string`, leaving out the
    /// conv-type options that are always zero here.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "r{}_k{}_s{s}{s}_e{}_i{}_o{}",
            self.repeats,
            self.kernel,
            self.expand_ratio,
            self.input_filters,
            self.output_filters,
            s = self.stride
        )?;
        if let Some(se) = self.se_ratio {
            write!(f, "_se{se}")?;
        }
        if !self.id_skip {
            f.write_str("_noskip")?;
        }
        Ok(())
    }
}

/// Decodes a list of block strings.
pub fn decode_blocks<S: AsRef<str>>(strings: &[S]) -> Result<Vec<BlockArgs>, BlockStringError> {
    strings.iter().map(|s| s.as_ref().parse()).collect()
}

/// The B0 stage list, decoded.
pub fn default_blocks() -> Vec<BlockArgs> {
    decode_blocks(&DEFAULT_BLOCKS).expect("the built-in block strings decode")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_b0_stage_one() {
        let b: BlockArgs = "r1_k3_s11_e1_i32_o16_se0.25".parse().unwrap();
        assert_eq!(
            b,
            BlockArgs {
                repeats: 1,
                kernel: 3,
                stride: 1,
                expand_ratio: 1,
                input_filters: 32,
                output_filters: 16,
                se_ratio: Some(0.25),
                id_skip: true
            }
        );
    }

    #[test]
    fn round_trips() {
        for s in
            DEFAULT_BLOCKS.iter().copied().chain(["r4_k5_s22_e6_i112_o192_noskip", "r2_k7_s11_e3_i24_o24_se0.5_noskip"])
        {
            let b: BlockArgs = s.parse().unwrap();
            assert_eq!(b.to_string(), s);
            assert_eq!(b.to_string().parse::<BlockArgs>().unwrap(), b);
        }
        // Order of options and TF's zero-valued conv options do not matter.
        let b: BlockArgs = "k3_r2_s22_e6_i16_o24_c0_f0_d0_se0.25".parse().unwrap();
        assert_eq!(b.to_string(), "r2_k3_s22_e6_i16_o24_se0.25");
        let noskip: BlockArgs = "r1_k3_s11_e1_i32_o16_noskip".parse().unwrap();
        assert!(!noskip.id_skip);
        assert_eq!(noskip.se_ratio, None);
    }

    #[test]
    fn rejects_bad_strings() {
        let cases = [
            ("r1_k3_s2_e1_i32_o16", "pair of digits"),
            ("r1_k3_s12_e1_i32_o16", "equal strides"),
            ("r1_k3_s11_e1_i32", "missing `o`"),
            ("r1_k4_s11_e1_i32_o16", "must be odd"),
            ("r1_k3_s11_e1_i32_o16_se1.5", "(0, 1]"),
            ("r1_k3_s11_e1_i32_o16_c1", "not supported"),
            ("r1_k3_s11_e1_i32_o16_x9", "unknown option `x9`"),
            ("r1_k3_s11_eX_i32_o16", "has no value"),
            ("r1_k3_s33_e1_i32_o16", "stride 3"),
        ];
        for (s, want) in cases {
            let e = s.parse::<BlockArgs>().unwrap_err().to_string();
            assert!(e.contains(want) && e.contains(s), "{s}: {e}");
        }
    }
}
