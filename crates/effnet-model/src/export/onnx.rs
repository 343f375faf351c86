//! The eval-mode network as an ONNX graph (opset 17): Conv → BatchNormalization → Sigmoid+Mul
//! (SiLU) or Clip (ReLU6); SE as GlobalAveragePool → Conv → act → Conv → Sigmoid → Mul;
//! TF-SAME as `auto_pad = "SAME_UPPER"` (TF's rule: the odd pixel at the end, at any input
//! size); input `[batch, C, height, width]` with batch, height and width dynamic.

use super::Tensor32;
use effnet_config::{Activation, Architecture, Padding};
use onnx_ir::{AttributeProto, AttributeType, GraphProto, Message, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use std::collections::BTreeMap;

/// ONNX opset of the graph: the first with every op used here in its current form.
pub const OPSET: i64 = 17;
/// IR version that goes with opset 17 (ONNX 1.12).
pub const IR_VERSION: i64 = 8;
/// Graph input and output names.
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "logits";
/// `TensorProto.DataType.FLOAT`.
const FLOAT: i32 = 1;

/// Nodes and initializers under construction.
struct Graph<'a> {
    tensors: &'a BTreeMap<String, Tensor32>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    padding: Padding,
    epsilon: f32,
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::FLOAT.into();
    a.f = v;
    a
}

fn attr_string(name: &str, v: &str) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::STRING.into();
    a.s = v.as_bytes().to_vec().into();
    a
}

impl Graph<'_> {
    /// Adds a node whose single output is named after the node.
    fn node(&mut self, op: &str, name: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let mut n = NodeProto::new();
        n.op_type = op.into();
        n.name = name.into();
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = vec![name.to_string()];
        n.attribute = attributes;
        self.nodes.push(n);
        name.to_string()
    }

    /// Adds the model tensor at `path` as an initializer of the same name.
    fn weight(&mut self, path: &str) -> Result<(String, Vec<usize>), String> {
        let t = self.tensors.get(path).ok_or_else(|| format!("the model has no tensor `{path}`"))?;
        let shape = t.shape.clone();
        let values = t.values.clone();
        self.constant(path, &shape, &values);
        Ok((path.to_string(), shape))
    }

    fn constant(&mut self, name: &str, shape: &[usize], values: &[f32]) {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.data_type = FLOAT;
        t.dims = shape.iter().map(|&d| d as i64).collect();
        t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into();
        self.initializers.push(t);
    }

    /// `conv` at module path `p` (`p.weight`, and `p.bias` with `bias`) on `channels_in`
    /// channels: depthwise convs have one input channel per group.
    fn conv(&mut self, x: &str, p: &str, stride: usize, channels_in: usize, bias: bool) -> Result<String, String> {
        let (w, shape) = self.weight(&format!("{p}.weight"))?;
        let (k, group) = (shape[2], channels_in / shape[1]);
        let mut inputs = vec![x.to_string(), w];
        if bias {
            inputs.push(self.weight(&format!("{p}.bias"))?.0);
        }
        let s = stride as i64;
        let mut attrs = vec![attr_ints("kernel_shape", &[k as i64; 2]), attr_ints("strides", &[s, s])];
        if group > 1 {
            attrs.push(attr_int("group", group as i64));
        }
        if k > 1 {
            attrs.push(match self.padding {
                Padding::TfSame => attr_string("auto_pad", "SAME_UPPER"),
                Padding::Symmetric => attr_ints("pads", &[(k / 2) as i64; 4]),
            });
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.node("Conv", p, &inputs, attrs))
    }

    /// conv → BatchNormalization → activation, at module path `p` (`p.conv`, `p.bn`).
    fn conv_bn_act(
        &mut self,
        x: &str,
        p: &str,
        stride: usize,
        channels_in: usize,
        act: Option<Activation>,
    ) -> Result<String, String> {
        let y = self.conv(x, &format!("{p}.conv"), stride, channels_in, false)?;
        let bn = format!("{p}.bn");
        let inputs: Vec<String> = ["gamma", "beta", "running_mean", "running_var"]
            .iter()
            .map(|f| self.weight(&format!("{bn}.{f}")).map(|w| w.0))
            .collect::<Result<_, _>>()?;
        let eps = self.epsilon;
        let y = self.node(
            "BatchNormalization",
            &bn,
            &[&y, &inputs[0], &inputs[1], &inputs[2], &inputs[3]],
            vec![attr_float("epsilon", eps)],
        );
        Ok(match act {
            Some(a) => self.activation(&y, a, &format!("{p}.act")),
            None => y,
        })
    }

    /// SiLU as Sigmoid + Mul; ReLU6 as Clip(0, 6).
    fn activation(&mut self, x: &str, act: Activation, name: &str) -> String {
        match act {
            Activation::Swish => {
                let s = self.node("Sigmoid", &format!("{name}.sigmoid"), &[x], vec![]);
                self.node("Mul", name, &[x, &s], vec![])
            }
            Activation::Relu6 => {
                let (lo, hi) = (format!("{name}.min"), format!("{name}.max"));
                self.constant(&lo, &[], &[0.0]);
                self.constant(&hi, &[], &[6.0]);
                self.node("Clip", name, &[x, &lo, &hi], vec![])
            }
        }
    }
}

/// A float tensor's type with named (dynamic) or fixed dimensions.
fn value_info(name: &str, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    let t = v.type_.mut_or_insert_default().mut_tensor_type();
    t.elem_type = FLOAT;
    let shape = t.shape.mut_or_insert_default();
    for d in dims {
        shape.dim.push(Default::default());
        let dim = shape.dim.last_mut().expect("just pushed");
        match d {
            Ok(n) => dim.set_dim_value(*n),
            Err(name) => dim.set_dim_param(name.to_string()),
        }
    }
    v
}

/// The ONNX model of `arch` with the weights in `tensors`, serialised; also the number of
/// initializers and of nodes.
pub fn model_bytes(
    arch: &Architecture,
    tensors: &BTreeMap<String, Tensor32>,
) -> Result<(Vec<u8>, usize, usize), String> {
    let mut g = Graph {
        tensors,
        nodes: Vec::new(),
        initializers: Vec::new(),
        padding: arch.padding,
        epsilon: arch.bn_eps as f32,
    };
    let act = Some(arch.activation);
    let mut x = g.conv_bn_act(INPUT, "stem", 2, arch.in_channels, act)?;
    for b in arch.blocks() {
        let p = format!("blocks.{}", b.index);
        let mut y = x.clone();
        if b.expand {
            y = g.conv_bn_act(&y, &format!("{p}.expand"), 1, b.in_channels, act)?;
        }
        y = g.conv_bn_act(&y, &format!("{p}.depthwise"), b.stride, b.mid_channels, act)?;
        if let Some(reduced) = b.se_channels {
            let s = g.node("GlobalAveragePool", &format!("{p}.se.squeeze"), &[&y], vec![]);
            let s = g.conv(&s, &format!("{p}.se.reduce"), 1, b.mid_channels, true)?;
            let s = g.activation(&s, arch.activation, &format!("{p}.se.act"));
            let s = g.conv(&s, &format!("{p}.se.expand"), 1, reduced, true)?;
            let s = g.node("Sigmoid", &format!("{p}.se.gate"), &[&s], vec![]);
            y = g.node("Mul", &format!("{p}.se"), &[&y, &s], vec![]);
        }
        y = g.conv_bn_act(&y, &format!("{p}.project"), 1, b.mid_channels, None)?;
        if b.residual {
            y = g.node("Add", &format!("{p}.residual"), &[&y, &x], vec![]);
        }
        x = y;
    }
    let last = arch.stages.last().map_or(arch.stem_channels, |s| s.out_channels);
    x = g.conv_bn_act(&x, "head", 1, last, act)?;
    let pooled = g.node("GlobalAveragePool", "pool", &[&x], vec![]);
    let flat = g.node("Flatten", "flatten", &[&pooled], vec![attr_int("axis", 1)]);
    // burn's Linear weight is [in, out]: Gemm's B without transposition.
    let (w, _) = g.weight("classifier.weight")?;
    let (b, _) = g.weight("classifier.bias")?;
    g.node("Gemm", OUTPUT, &[&flat, &w, &b], vec![]);

    let (initializers, nodes) = (g.initializers.len(), g.nodes.len());
    let mut graph = GraphProto::new();
    graph.name = format!("efficientnet-{}", arch.name);
    graph.node = g.nodes;
    graph.initializer = g.initializers;
    graph.input = vec![value_info(INPUT, &[Err("batch"), Ok(arch.in_channels as i64), Err("height"), Err("width")])];
    graph.output = vec![value_info(OUTPUT, &[Err("batch"), Ok(arch.num_classes as i64)])];
    let mut model = ModelProto::new();
    model.ir_version = IR_VERSION;
    model.producer_name = "effnet".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    model.opset_import.push(Default::default());
    model.opset_import[0].version = OPSET;
    *model.graph.mut_or_insert_default() = graph;
    let bytes = model.write_to_bytes().map_err(|e| e.to_string())?;
    Ok((bytes, initializers, nodes))
}

/// What a structural check of an ONNX file found.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxInfo {
    pub opset: i64,
    pub inputs: Vec<(String, Vec<String>)>,
    pub outputs: Vec<(String, Vec<String>)>,
    /// Node count by op type.
    pub ops: BTreeMap<String, usize>,
    pub initializers: usize,
    /// Convs with `auto_pad = "SAME_UPPER"` (TF-SAME).
    pub same_upper_convs: usize,
}

/// Decodes an ONNX file's bytes: opset, graph inputs and outputs with their dimensions (a
/// number, or the name of a dynamic one) and the ops used.
pub fn inspect(bytes: &[u8]) -> Result<OnnxInfo, String> {
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| e.to_string())?;
    let opset = model.opset_import.iter().filter(|o| o.domain.is_empty()).map(|o| o.version).max().unwrap_or(0);
    let graph = model.graph.as_ref().ok_or("the model has no graph")?;
    let dims = |v: &ValueInfoProto| -> (String, Vec<String>) {
        let dims = v
            .type_
            .tensor_type()
            .shape
            .dim
            .iter()
            .map(|d| if d.has_dim_param() { d.dim_param().to_string() } else { d.dim_value().to_string() })
            .collect();
        (v.name.clone(), dims)
    };
    let mut ops = BTreeMap::new();
    for n in &graph.node {
        *ops.entry(n.op_type.clone()).or_insert(0) += 1;
    }
    Ok(OnnxInfo {
        opset,
        inputs: graph.input.iter().map(dims).collect(),
        outputs: graph.output.iter().map(dims).collect(),
        ops,
        initializers: graph.initializer.len(),
        same_upper_convs: graph
            .node
            .iter()
            .filter(|n| n.attribute.iter().any(|a| a.name == "auto_pad" && &a.s[..] == b"SAME_UPPER"))
            .count(),
    })
}
