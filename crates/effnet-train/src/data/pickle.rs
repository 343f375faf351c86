//! A restricted pickle reader for the CIFAR-100 python files.
//!
//! Why by hand: the official `cifar-100-python/{train,test,meta}` files are pickled dicts holding
//! a numpy `uint8` array, and no Rust crate reads pickled numpy arrays without either running a
//! Python interpreter or trusting the stream. Unpickling arbitrary data executes arbitrary code,
//! so this reader is a data-only interpreter: it understands the opcodes of protocols 0–4 that
//! build dicts, lists, tuples, strings, bytes, numbers and booleans, plus exactly the numpy
//! globals an `ndarray` needs (`numpy.core.multiarray._reconstruct`, `numpy.ndarray`,
//! `numpy.dtype`), and rejects every other global. Nothing is ever called.
//!
//! Memo entries are copies, not shared references: an object mutated after it was memoised and
//! then fetched again would be stale. The CIFAR files never do this (their memo hits are strings
//! and dtypes).

use std::rc::Rc;

/// A value of the restricted object model.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True`/`False`.
    Bool(bool),
    /// Any integer that fits in 64 bits.
    Int(i64),
    /// A float.
    Float(f64),
    /// Python 3 `bytes` or a Python 2 `str`.
    Bytes(Rc<[u8]>),
    /// Python 3 `str` or Python 2 `unicode`.
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A dict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A global reference (`module.name`), only the allowed numpy ones.
    Global(String, String),
    /// A numpy dtype by its type string (`u1`, `<i8`, …).
    Dtype(String),
    /// A numpy array: shape, dtype string, raw C-order bytes.
    NdArray {
        /// The shape.
        shape: Vec<usize>,
        /// The dtype string (`u1` for uint8).
        dtype: String,
        /// Fortran order.
        fortran: bool,
        /// The raw element bytes.
        data: Rc<[u8]>,
    },
}

impl Value {
    /// The value of `key` in a dict whose keys are `str` or `bytes`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find(|(k, _)| k.as_text().as_deref() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A `str` or `bytes` value as text (bytes decoded lossily as UTF-8).
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// A list or tuple's items.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Bytes(_) => "bytes",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Global(..) => "global",
            Value::Dtype(_) => "dtype",
            Value::NdArray { .. } => "ndarray",
        }
    }
}

const ALLOWED_GLOBALS: [(&str, &str); 5] = [
    // Python 3 writes `bytes` at protocol 2 as `_codecs.encode(latin-1 text, "latin1")`.
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
];

/// Parses one pickle stream into a [`Value`]; the error says which opcode and offset failed.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    Parser { b: bytes, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: Vec::new() }.run()
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: Vec<Option<Value>>,
}

impl Parser<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.b.len() - self.pos < n {
            return Err(format!("truncated pickle: needs {n} bytes at offset {}", self.pos));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()) as usize)
    }

    fn u64(&mut self) -> Result<usize, String> {
        usize::try_from(u64::from_le_bytes(self.take(8)?.try_into().unwrap())).map_err(|e| e.to_string())
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.b[self.pos..];
        let end = rest.iter().position(|&c| c == b'\n').ok_or("unterminated text line in pickle")?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack.pop().ok_or_else(|| format!("pickle stack underflow at offset {}", self.pos))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let m = self.marks.pop().ok_or_else(|| format!("pickle MARK missing at offset {}", self.pos))?;
        if m > self.stack.len() {
            return Err(format!("pickle MARK beyond the stack at offset {}", self.pos));
        }
        Ok(self.stack.split_off(m))
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        let pos = self.pos;
        self.stack.last_mut().ok_or_else(|| format!("pickle stack underflow at offset {pos}"))
    }

    fn memo_put(&mut self, idx: usize) -> Result<(), String> {
        let v = self.top()?.clone();
        if idx > 10_000_000 {
            return Err(format!("pickle memo index {idx} too large"));
        }
        if self.memo.len() <= idx {
            self.memo.resize(idx + 1, None);
        }
        self.memo[idx] = Some(v);
        Ok(())
    }

    fn memo_get(&mut self, idx: usize) -> Result<(), String> {
        let v = self.memo.get(idx).cloned().flatten().ok_or_else(|| format!("pickle memo {idx} unset"))?;
        self.stack.push(v);
        Ok(())
    }

    fn push_bytes(&mut self, n: usize) -> Result<(), String> {
        let v = Value::Bytes(Rc::from(self.take(n)?));
        self.stack.push(v);
        Ok(())
    }

    fn push_str(&mut self, n: usize) -> Result<(), String> {
        let s = String::from_utf8(self.take(n)?.to_vec()).map_err(|e| e.to_string())?;
        self.stack.push(Value::Str(s));
        Ok(())
    }

    fn global(&mut self, module: String, name: String) -> Result<(), String> {
        if !ALLOWED_GLOBALS.contains(&(module.as_str(), name.as_str())) {
            return Err(format!("refusing pickle global {module}.{name} (only numpy arrays are read)"));
        }
        self.stack.push(Value::Global(module, name));
        Ok(())
    }

    fn reduce(&mut self) -> Result<(), String> {
        let args = self.pop()?;
        let callable = self.pop()?;
        let args = args.as_seq().ok_or("pickle REDUCE arguments are not a tuple")?.to_vec();
        let v = match &callable {
            Value::Global(_, n) if n == "_reconstruct" => {
                Value::NdArray { shape: vec![], dtype: String::new(), fortran: false, data: Rc::from(&[][..]) }
            }
            Value::Global(m, n) if m == "_codecs" && n == "encode" => match (args.first(), args.get(1)) {
                (Some(Value::Str(s)), Some(enc)) if enc.as_text().as_deref() == Some("latin1") => {
                    Value::Bytes(Rc::from(s.chars().map(|c| c as u32 as u8).collect::<Vec<u8>>()))
                }
                _ => return Err("_codecs.encode other than (str, \"latin1\")".into()),
            },
            Value::Global(_, n) if n == "dtype" => {
                Value::Dtype(args.first().and_then(Value::as_text).ok_or("numpy.dtype without a type string")?)
            }
            other => return Err(format!("pickle REDUCE of unsupported {}", other.kind())),
        };
        self.stack.push(v);
        Ok(())
    }

    fn build(&mut self) -> Result<(), String> {
        let state = self.pop()?;
        match self.top()? {
            Value::NdArray { shape, dtype, fortran, data } => {
                // ndarray.__setstate__((version, shape, dtype, is_fortran, raw bytes))
                let s = state.as_seq().ok_or("ndarray state is not a tuple")?;
                let (shp, dt, fo, raw) = match s.len() {
                    5 => (&s[1], &s[2], &s[3], &s[4]),
                    4 => (&s[0], &s[1], &s[2], &s[3]),
                    n => return Err(format!("ndarray state has {n} items")),
                };
                *shape = shp
                    .as_seq()
                    .ok_or("ndarray shape is not a tuple")?
                    .iter()
                    .map(|d| match d {
                        Value::Int(i) if *i >= 0 => Ok(*i as usize),
                        _ => Err("ndarray shape entry is not a non-negative int".to_string()),
                    })
                    .collect::<Result<_, _>>()?;
                *dtype = match dt {
                    Value::Dtype(d) => d.clone(),
                    _ => return Err("ndarray dtype is not a numpy.dtype".into()),
                };
                *fortran = matches!(fo, Value::Bool(true) | Value::Int(1));
                *data = match raw {
                    Value::Bytes(b) => b.clone(),
                    Value::Str(s) => {
                        // Python 2 str data unpickled as latin-1 text: code points are the bytes.
                        Rc::from(s.chars().map(|c| c as u32 as u8).collect::<Vec<u8>>())
                    }
                    _ => return Err("ndarray data is not bytes (object arrays are not supported)".into()),
                };
                Ok(())
            }
            // dtype state (endianness, field names, …) does not matter for the uint8 arrays read.
            Value::Dtype(_) => Ok(()),
            other => Err(format!("pickle BUILD on unsupported {}", other.kind())),
        }
    }

    fn run(mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.u64()?; // FRAME
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.stack.push(Value::Dict(vec![])),
                b']' => self.stack.push(Value::List(vec![])),
                b')' => self.stack.push(Value::Tuple(vec![])),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(format!("pickle stack underflow at offset {at}"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items)?;
                    self.stack.push(Value::Dict(pairs));
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        _ => return Err(format!("pickle APPEND to a non-list at offset {at}")),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err(format!("pickle APPENDS to a non-list at offset {at}")),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(d) => d.push((k, v)),
                        _ => return Err(format!("pickle SETITEM on a non-dict at offset {at}")),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let p = pairs(items)?;
                    match self.top()? {
                        Value::Dict(d) => d.extend(p),
                        _ => return Err(format!("pickle SETITEMS on a non-dict at offset {at}")),
                    }
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().unwrap());
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take(2)?.try_into().unwrap());
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let raw = self.take(n)?;
                    if n > 8 {
                        return Err(format!("pickle LONG1 of {n} bytes at offset {at}"));
                    }
                    let mut buf = if raw.last().is_some_and(|b| b & 0x80 != 0) { [0xff; 8] } else { [0; 8] };
                    buf[..n].copy_from_slice(raw);
                    self.stack.push(Value::Int(i64::from_le_bytes(buf)));
                }
                b'I' | b'L' => {
                    let l = self.line()?;
                    let v = match l.trim_end_matches('L') {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        t => Value::Int(t.parse().map_err(|_| format!("bad pickle INT {l:?}"))?),
                    };
                    self.stack.push(v);
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.stack.push(Value::Float(v));
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'U' | b'C' => {
                    let n = self.u8()? as usize;
                    self.push_bytes(n)?;
                }
                b'T' | b'B' => {
                    let n = self.u32()?;
                    self.push_bytes(n)?;
                }
                0x8e => {
                    let n = self.u64()?;
                    self.push_bytes(n)?;
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    self.push_str(n)?;
                }
                b'X' => {
                    let n = self.u32()?;
                    self.push_str(n)?;
                }
                0x8d => {
                    let n = self.u64()?;
                    self.push_str(n)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?.as_text().ok_or("STACK_GLOBAL name is not a string")?;
                    let module = self.pop()?.as_text().ok_or("STACK_GLOBAL module is not a string")?;
                    self.global(module, name)?;
                }
                b'R' => self.reduce()?,
                b'b' => self.build()?,
                b'q' => {
                    let i = self.u8()? as usize;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len();
                    self.memo_put(i)?;
                }
                b'p' => {
                    let i = self.line()?.parse().map_err(|_| "bad pickle PUT index")?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as usize;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?;
                }
                b'g' => {
                    let i = self.line()?.parse().map_err(|_| "bad pickle GET index")?;
                    self.memo_get(i)?;
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                _ => return Err(format!("unsupported pickle opcode 0x{op:02x} at offset {at}")),
            }
        }
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("pickle dict with an odd number of items".into());
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol2_dict_and_refusal() {
        // pickle.dumps({'a': [1, 300, -2], b'b': (True, None)}, protocol=2)
        let p =
            b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01M,\x01J\xfe\xff\xff\xffeC\x01bq\x03\x88N\x86q\x04u.";
        let v = parse(p).unwrap();
        assert_eq!(v.get("a").unwrap(), &Value::List(vec![Value::Int(1), Value::Int(300), Value::Int(-2)]));
        assert_eq!(v.get("b").unwrap(), &Value::Tuple(vec![Value::Bool(true), Value::None]));
        let e = parse(b"\x80\x02cos\nsystem\nq\x00.").unwrap_err();
        assert!(e.contains("refusing pickle global os.system"), "{e}");
        assert!(parse(b"\x80\x02}q\x00(X\x05\x00").unwrap_err().contains("truncated"));
    }
}
