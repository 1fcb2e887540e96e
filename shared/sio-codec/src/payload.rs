//! The arguments of an event or an ack, with their binary attachments.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// The arguments of an event or ack: JSON values plus binary attachments.
///
/// Binary data travels as attachments (socket.io-protocol, "Packet encoding": "binary attachments
/// extracted"). Inside `args`, each attachment is referenced by a placeholder object
/// `{"_placeholder":true,"num":<index in binaries>}`, exactly as on the wire; the placeholder can
/// sit anywhere in the arguments (a top-level argument or deep inside an object). Keeping the
/// placeholders means a payload can be re-emitted unchanged, and reading one is
/// [`Payload::binary`] on the placeholder value.
///
/// ```
/// use duet_sio_codec::Payload;
/// use serde_json::json;
///
/// let p = Payload::json(json!({"code": "ABC123"})).with_binary(vec![1u8, 2, 3]);
/// assert_eq!(p.args.len(), 2);
/// #[derive(serde::Deserialize)]
/// struct Join { code: String }
/// assert_eq!(p.first::<Join>().unwrap().code, "ABC123");
/// assert_eq!(&p.binary(&p.args[1]).unwrap()[..], &[1, 2, 3]);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    /// The JSON arguments, in order (without the event name).
    pub args: Vec<Value>,
    /// The binary attachments, referenced from `args` by placeholder objects.
    pub binaries: Vec<Bytes>,
}

impl Payload {
    /// No arguments.
    pub fn empty() -> Self {
        Self::default()
    }

    /// One JSON argument.
    pub fn json(value: impl Into<Value>) -> Self {
        Payload {
            args: vec![value.into()],
            binaries: Vec::new(),
        }
    }

    /// Several JSON arguments and their attachments. Placeholders in `args` must refer to
    /// indexes of `binaries` (see [`Payload::placeholder`]).
    pub fn new(args: Vec<Value>, binaries: Vec<Bytes>) -> Self {
        Payload { args, binaries }
    }

    /// Several JSON arguments.
    pub fn args(args: Vec<Value>) -> Self {
        Payload {
            args,
            binaries: Vec::new(),
        }
    }

    /// One argument serialized from any `Serialize` value.
    pub fn serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Self::json(serde_json::to_value(value)?))
    }

    /// Appends a binary argument (a placeholder in `args`, the bytes in `binaries`).
    #[must_use]
    pub fn with_binary(mut self, data: impl Into<Bytes>) -> Self {
        self.push_binary(data);
        self
    }

    /// Appends a binary argument and returns its placeholder's index.
    pub fn push_binary(&mut self, data: impl Into<Bytes>) -> usize {
        let num = self.binaries.len();
        self.binaries.push(data.into());
        self.args.push(Self::placeholder(num));
        num
    }

    /// Appends a JSON argument.
    #[must_use]
    pub fn with_arg(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// The placeholder object standing for attachment `num`.
    pub fn placeholder(num: usize) -> Value {
        json!({"_placeholder": true, "num": num})
    }

    /// If `value` is a placeholder, the index it points to.
    pub fn placeholder_index(value: &Value) -> Option<usize> {
        let obj = value.as_object()?;
        if obj.get("_placeholder")? != &Value::Bool(true) {
            return None;
        }
        obj.get("num")?
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
    }

    /// The attachment a placeholder value refers to.
    pub fn binary(&self, placeholder: &Value) -> Option<&Bytes> {
        self.binaries.get(Self::placeholder_index(placeholder)?)
    }

    /// The first argument, deserialized.
    pub fn first<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        self.arg(0)
    }

    /// Argument `index`, deserialized (a missing argument deserializes from `null`).
    pub fn arg<T: DeserializeOwned>(&self, index: usize) -> Result<T, serde_json::Error> {
        T::deserialize(self.args.get(index).unwrap_or(&Value::Null))
    }

    /// True when there are attachments (the packet is sent as `BINARY_EVENT` / `BINARY_ACK`).
    pub fn has_binary(&self) -> bool {
        !self.binaries.is_empty()
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Payload::json(value)
    }
}

impl From<Vec<Value>> for Payload {
    fn from(args: Vec<Value>) -> Self {
        Payload::args(args)
    }
}

impl From<()> for Payload {
    fn from(_: ()) -> Self {
        Payload::empty()
    }
}

/// One-argument payloads from plain values: `socket.emit("n", 3)`, `emit("s", "text")`.
macro_rules! from_scalar {
    ($($t:ty),*) => {$(
        impl From<$t> for Payload {
            fn from(v: $t) -> Self {
                Payload::json(Value::from(v))
            }
        }
    )*};
}
from_scalar!(bool, i32, i64, u32, u64, usize, f64, String, &str);
