//! Range checks shared by the sections; each error names the key, the value and the range.

use crate::error::Invalid;

pub(super) fn in_range_f64(key: &str, v: f64, lo: f64, hi: f64) -> Result<f64, Invalid> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(Invalid::new(key, v, format!("must be between {lo} and {hi}")))
    }
}

pub(super) fn in_range_usize(key: &str, v: usize, lo: usize, hi: usize) -> Result<usize, Invalid> {
    if (lo..=hi).contains(&v) { Ok(v) } else { Err(Invalid::new(key, v, format!("must be between {lo} and {hi}"))) }
}

pub(super) fn positive(key: &str, v: f64) -> Result<f64, Invalid> {
    if v.is_finite() && v > 0.0 { Ok(v) } else { Err(Invalid::new(key, v, "must be a positive number")) }
}

pub(super) fn probability(key: &str, v: f64, inclusive_one: bool) -> Result<f64, Invalid> {
    let ok = v.is_finite() && v >= 0.0 && if inclusive_one { v <= 1.0 } else { v < 1.0 };
    if ok {
        Ok(v)
    } else {
        Err(Invalid::new(key, v, if inclusive_one { "must be in [0, 1]" } else { "must be in [0, 1)" }))
    }
}
