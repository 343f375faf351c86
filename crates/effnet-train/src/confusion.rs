//! The confusion matrix of an evaluation and the per-class accuracies read from it.

use serde::Serialize;

/// Counts of (true class, predicted class) pairs: row = true class, column = top-1 prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    classes: usize,
    counts: Vec<u64>,
}

/// One class's top-1 accuracy on the evaluated split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassAccuracy {
    pub index: usize,
    pub name: String,
    /// Images of this class in the split.
    pub images: u64,
    /// Of them, predicted as this class.
    pub correct: u64,
    /// `correct / images`; `None` for a class with no images in the split.
    pub top1: Option<f64>,
}

impl ConfusionMatrix {
    /// An all-zero `classes × classes` matrix.
    pub fn new(classes: usize) -> Self {
        Self { classes, counts: vec![0; classes * classes] }
    }

    /// Counts one image of class `target` predicted as `predicted`.
    pub fn add(&mut self, target: usize, predicted: usize) {
        assert!(target < self.classes && predicted < self.classes, "class index out of range");
        self.counts[target * self.classes + predicted] += 1;
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Every image counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The rows (true classes) as nested vectors, for JSON.
    pub fn rows(&self) -> Vec<Vec<u64>> {
        self.counts.chunks(self.classes.max(1)).map(<[u64]>::to_vec).collect()
    }

    /// Per-class top-1 accuracy; `names[i]` names class i (`class i` where missing).
    pub fn per_class(&self, names: &[String]) -> Vec<ClassAccuracy> {
        (0..self.classes)
            .map(|i| {
                let row = &self.counts[i * self.classes..(i + 1) * self.classes];
                let images: u64 = row.iter().sum();
                let correct = row[i];
                ClassAccuracy {
                    index: i,
                    name: names.get(i).cloned().unwrap_or_else(|| format!("class {i}")),
                    images,
                    correct,
                    top1: (images > 0).then(|| correct as f64 / images as f64),
                }
            })
            .collect()
    }

    /// The `k` classes with the lowest top-1 accuracy (classes without images left out; ties in
    /// class order).
    pub fn worst(&self, names: &[String], k: usize) -> Vec<ClassAccuracy> {
        let mut v: Vec<ClassAccuracy> = self.per_class(names).into_iter().filter(|c| c.top1.is_some()).collect();
        v.sort_by(|a, b| a.top1.unwrap().total_cmp(&b.top1.unwrap()).then(a.index.cmp(&b.index)));
        v.truncate(k);
        v
    }
}
