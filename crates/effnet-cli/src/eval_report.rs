//! What `effnet eval` reports beyond loss and accuracy: per-class top-1, the confusion matrix
//! (`--json`) and the worst classes (text).

use effnet_train::confusion::ConfusionMatrix;
use effnet_train::text::escape_control;
use serde_json::{Value, json};

/// How many of the lowest per-class accuracies the text report lists.
pub const WORST: usize = 5;

/// `{"per_class": [{"index", "name", "images", "correct", "top1"}], "confusion_matrix": [[…]]}`:
/// row = true class, column = predicted class; `top1` is null for a class without images.
pub fn json_fields(cm: &ConfusionMatrix, names: &[String]) -> Value {
    json!({ "per_class": cm.per_class(names), "confusion_matrix": cm.rows() })
}

/// The worst classes as text lines, lowest top-1 first.
pub fn worst_classes(cm: &ConfusionMatrix, names: &[String]) -> String {
    let worst = cm.worst(names, WORST);
    let names: Vec<String> = worst.iter().map(|c| escape_control(&c.name).into_owned()).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).min(40);
    let mut out = format!("worst classes (top-1, {} of {}):\n", worst.len(), cm.classes());
    for (c, name) in worst.iter().zip(&names) {
        out.push_str(&format!(
            "  {:>4}  {:<width$}  {:>6.2}%  ({}/{})\n",
            c.index,
            name,
            100.0 * c.top1.unwrap_or(0.0),
            c.correct,
            c.images
        ));
    }
    out
}
