//! A small unpickler for PyTorch's legacy checkpoints: the opcodes such files use (pickle
//! protocol 2) and a whitelist of callables (`collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2`), in the spirit of `torch.load(weights_only=True)`:
//! nothing is executed, anything else is refused with the byte offset of the opcode.
//!
//! Why not `candle_core::pickle`: its high-level readers (`read_all`, `PthTensors`) open
//! only the zip-based format of torch >= 1.6, and its low-level `Stack` (a) decodes `LONG1`
//! by shifting an `i64` by up to 72 bits, which panics under debug assertions on the
//! 10-byte magic number every legacy file starts with, (b) pushes each `SETITEMS` batch in
//! reverse, losing the state-dict order, and (c) would bring in candle-core's whole
//! dependency tree (gemm, rand, safetensors, zip...), about 70 crates, for ~300 lines of
//! parsing. `serde-pickle` cannot resolve globals or persistent ids. So this reader
//! implements only what the format needs, with shared (reference) semantics for memoised
//! containers as Python has.
use super::Cursor;
use crate::Result;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Element type of a storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DType {
    F32,
    F64,
    I64,
    I32,
}

impl DType {
    pub(super) fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            _ => return None,
        })
    }
}

/// A storage named by a persistent id: `('storage', torch.XStorage, key, location, numel, None)`.
#[derive(Debug)]
pub(super) struct StorageRef {
    pub key: String,
    pub dtype: DType,
    pub numel: u64,
}

/// A tensor rebuilt by `_rebuild_tensor_v2(storage, offset, size, stride, ...)`.
#[derive(Debug)]
pub(super) struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub offset: u64,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// A Python value as far as these files need.
#[derive(Clone, Debug)]
pub(super) enum Value {
    Mark,
    None,
    Bool(bool),
    Int(i64),
    /// A `LONG1` wider than 64 bits: little-endian two's-complement bytes.
    BigInt(Rc<[u8]>),
    Str(Rc<str>),
    Tuple(Rc<[Value]>),
    List(Rc<RefCell<Vec<Value>>>),
    /// A dict or OrderedDict; insertion order kept.
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(Rc<(String, String)>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Mark => "mark",
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// Reads one pickle (up to and including `STOP`) at the cursor.
pub(super) fn unpickle(cur: &mut Cursor) -> Result<Value> {
    let mut m = Machine {
        stack: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        let at = cur.pos();
        let op = cur.u8()?;
        let r: std::result::Result<(), String> = match op {
            0x80 => match cur.u8()? {
                v if v <= 5 => Ok(()),
                v => Err(format!("pickle protocol {v} is not supported")),
            },
            b'.' => {
                return match (m.stack.pop(), m.stack.is_empty()) {
                    (Some(v), true) => Ok(v),
                    _ => Err(cur.error_at(at, "STOP with a malformed stack")),
                }
            }
            b'c' => {
                let module = cur.line()?;
                let name = cur.line()?;
                m.push(Value::Global(Rc::new((module, name))))
            }
            b'q' => {
                let i = cur.u8()?;
                m.memo_put(u32::from(i))
            }
            b'r' => {
                let i = cur.u32()?;
                m.memo_put(i)
            }
            b'h' => {
                let i = cur.u8()?;
                m.memo_get(u32::from(i))
            }
            b'j' => {
                let i = cur.u32()?;
                m.memo_get(i)
            }
            b'(' => m.push(Value::Mark),
            b')' => m.push(Value::Tuple(Rc::from(Vec::new()))),
            b't' => m
                .pop_mark()
                .and_then(|items| m.push(Value::Tuple(items.into()))),
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                m.pop_n(n)
                    .and_then(|items| m.push(Value::Tuple(items.into())))
            }
            b'}' => m.push(Value::Dict(Rc::default())),
            b']' => m.push(Value::List(Rc::default())),
            b's' => m.pop_n(2).and_then(|kv| m.set_items(kv)),
            b'u' => m.pop_mark().and_then(|kv| m.set_items(kv)),
            b'a' => m.pop_n(1).and_then(|v| m.append(v)),
            b'e' => m.pop_mark().and_then(|v| m.append(v)),
            b'J' => {
                let v = cur.i32()?;
                m.push(Value::Int(i64::from(v)))
            }
            b'K' => {
                let v = cur.u8()?;
                m.push(Value::Int(i64::from(v)))
            }
            b'M' => {
                let v = cur.u16()?;
                m.push(Value::Int(i64::from(v)))
            }
            0x8a => {
                let n = usize::from(cur.u8()?);
                let bytes = cur.take(n)?;
                m.push(long1(bytes))
            }
            b'X' => {
                let n = cur.u32()?;
                let n = usize::try_from(n).map_err(|_| cur.error_at(at, "string too long"))?;
                let bytes = cur.take(n)?;
                match std::str::from_utf8(bytes) {
                    Ok(s) => m.push(Value::Str(Rc::from(s))),
                    Err(e) => Err(format!("string is not UTF-8: {e}")),
                }
            }
            b'N' => m.push(Value::None),
            0x88 => m.push(Value::Bool(true)),
            0x89 => m.push(Value::Bool(false)),
            b'R' => m.pop_n(2).and_then(|mut ca| {
                let args = ca.pop().unwrap_or(Value::None);
                let callable = ca.pop().unwrap_or(Value::None);
                reduce(&callable, &args).and_then(|v| m.push(v))
            }),
            b'b' => m.pop_n(1).and_then(|_state| match m.stack.last() {
                // OrderedDict.__reduce__ passes the instance __dict__ (e.g. the state dict's
                // `_metadata`) as state: attributes, not items, so nothing to keep.
                Some(Value::Dict(_)) => Ok(()),
                Some(other) => Err(format!("BUILD on a {} is not supported", other.kind())),
                None => Err("BUILD on an empty stack".into()),
            }),
            b'Q' => m.pop_n(1).and_then(|mut pid| {
                persistent_load(pid.pop().unwrap_or(Value::None)).and_then(|v| m.push(v))
            }),
            other => Err(format!(
                "unsupported pickle opcode 0x{other:02x} ({:?})",
                char::from(other)
            )),
        };
        r.map_err(|msg| cur.error_at(at, msg))?;
    }
}

struct Machine {
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

type Step<T = ()> = std::result::Result<T, String>;

impl Machine {
    fn push(&mut self, v: Value) -> Step {
        self.stack.push(v);
        Ok(())
    }

    fn pop_n(&mut self, n: usize) -> Step<Vec<Value>> {
        let mark = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .map_or(0, |i| i + 1);
        if self.stack.len() < mark + n {
            return Err(format!("stack underflow: needed {n} value(s)"));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn pop_mark(&mut self) -> Step<Vec<Value>> {
        let mark = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or("no MARK on the stack")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn memo_put(&mut self, i: u32) -> Step {
        let top = self
            .stack
            .last()
            .ok_or("memo put on an empty stack")?
            .clone();
        self.memo.insert(i, top);
        Ok(())
    }

    fn memo_get(&mut self, i: u32) -> Step {
        let v = self
            .memo
            .get(&i)
            .ok_or_else(|| format!("memo entry {i} was never stored"))?
            .clone();
        self.push(v)
    }

    fn set_items(&mut self, kv: Vec<Value>) -> Step {
        if kv.len() % 2 == 1 {
            return Err("odd number of values for dict items".into());
        }
        let Some(Value::Dict(d)) = self.stack.last() else {
            return Err("SETITEM(S) without a dict".into());
        };
        let mut d = d.borrow_mut();
        let mut it = kv.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Step {
        let Some(Value::List(l)) = self.stack.last() else {
            return Err("APPEND(S) without a list".into());
        };
        l.borrow_mut().extend(items);
        Ok(())
    }
}

fn long1(bytes: &[u8]) -> Value {
    if bytes.len() > 8 {
        return Value::BigInt(Rc::from(bytes));
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut le = [if negative { 0xff } else { 0 }; 8];
    le[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(le))
}

fn as_int(v: &Value, what: &str) -> Step<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(format!("{what}: expected an int, got a {}", other.kind())),
    }
}

fn as_usize(v: &Value, what: &str) -> Step<usize> {
    let i = as_int(v, what)?;
    usize::try_from(i).map_err(|_| format!("{what}: {i} is negative or too large"))
}

fn as_usizes(v: &Value, what: &str) -> Step<Vec<usize>> {
    match v {
        Value::Tuple(items) => items.iter().map(|x| as_usize(x, what)).collect(),
        other => Err(format!("{what}: expected a tuple, got a {}", other.kind())),
    }
}

/// Calls a whitelisted callable.
fn reduce(callable: &Value, args: &Value) -> Step<Value> {
    let Value::Global(g) = callable else {
        return Err(format!("REDUCE on a {}, not a global", callable.kind()));
    };
    let Value::Tuple(args) = args else {
        return Err(format!(
            "REDUCE arguments are a {}, not a tuple",
            args.kind()
        ));
    };
    match (g.0.as_str(), g.1.as_str()) {
        ("collections", "OrderedDict") if args.is_empty() => Ok(Value::Dict(Rc::default())),
        ("torch._utils", "_rebuild_tensor_v2") => {
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            if args.len() < 4 {
                return Err(format!("_rebuild_tensor_v2 with {} arguments", args.len()));
            }
            let Value::Storage(storage) = &args[0] else { return Err(format!("_rebuild_tensor_v2: storage is a {}", args[0].kind())) };
            let offset = as_usize(&args[1], "storage offset")? as u64;
            let shape = as_usizes(&args[2], "tensor size")?;
            let stride = as_usizes(&args[3], "tensor stride")?;
            if shape.len() != stride.len() {
                return Err(format!("tensor size {shape:?} and stride {stride:?} differ in rank"));
            }
            Ok(Value::Tensor(Rc::new(TensorRef { storage: storage.clone(), offset, shape, stride })))
        }
        (module, name) => Err(format!("global {module}.{name} is not allowed (only collections.OrderedDict and torch._utils._rebuild_tensor_v2)")),
    }
}

/// Resolves `('storage', torch.XStorage, key, location, numel[, view_metadata])`.
fn persistent_load(pid: Value) -> Step<Value> {
    let Value::Tuple(t) = &pid else {
        return Err(format!("persistent id is a {}, not a tuple", pid.kind()));
    };
    match &t[..] {
        [Value::Str(tag), Value::Global(class), Value::Str(key), Value::Str(_location), numel, rest @ ..]
            if &**tag == "storage" =>
        {
            if rest.iter().any(|v| !matches!(v, Value::None)) {
                return Err(format!("storage {key}: storage views are not supported"));
            }
            let dtype = DType::from_storage_class(&class.1).ok_or_else(|| {
                format!(
                    "storage {key}: type {}.{} is not supported",
                    class.0, class.1
                )
            })?;
            let numel = as_int(numel, "storage size")?;
            let numel = u64::try_from(numel)
                .map_err(|_| format!("storage {key}: negative size {numel}"))?;
            Ok(Value::Storage(Rc::new(StorageRef {
                key: key.to_string(),
                dtype,
                numel,
            })))
        }
        _ => Err("persistent id is not a ('storage', type, key, location, size) tuple".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn run(bytes: &[u8]) -> Result<Value> {
        let mut cur = Cursor::new(Path::new("t.pth"), bytes);
        unpickle(&mut cur)
    }

    #[test]
    fn long1_sign_extends() {
        assert!(matches!(long1(&[0xff]), Value::Int(-1)));
        assert!(matches!(long1(&[0x01, 0x01]), Value::Int(257)));
        assert!(matches!(long1(&[]), Value::Int(0)));
        assert!(matches!(long1(&[0; 10]), Value::BigInt(_)));
    }

    #[test]
    fn setitems_keep_order_and_memo_shares_containers() {
        // {}; memo 0; MARK 'a' 1 'b' 2 SETITEMS; get memo 0; build a 2-tuple of both.
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02uh\x00\x86.";
        let v = run(p).expect("pickle");
        let Value::Tuple(t) = v else {
            panic!("not a tuple")
        };
        let (Value::Dict(a), Value::Dict(b)) = (&t[0], &t[1]) else {
            panic!("not dicts")
        };
        assert!(Rc::ptr_eq(a, b));
        let keys: Vec<String> = a
            .borrow()
            .iter()
            .map(|(k, _)| {
                if let Value::Str(s) = k {
                    s.to_string()
                } else {
                    String::new()
                }
            })
            .collect();
        assert_eq!(keys, ["a", "b"]);
    }

    #[test]
    fn unknown_global_is_refused_with_offset() {
        let p = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.";
        let e = run(p).expect_err("must refuse").to_string();
        assert!(
            e.contains("os.system is not allowed") && e.contains("byte 21"),
            "{e}"
        );
    }

    #[test]
    fn truncated_pickle_names_the_offset() {
        let e = run(b"\x80\x02X\x10\x00\x00\x00abc")
            .expect_err("truncated")
            .to_string();
        assert!(e.contains("byte 7"), "{e}");
    }
}
