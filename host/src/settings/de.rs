//! Reading the configuration file's TOML into the settings, with serde.
//!
//! toml parses the text (so that syntax errors carry a line number); a
//! small serde [`Deserializer`] over the parsed value then fills the
//! settings' sections. Its error type, [`FileError`], keeps what went wrong
//! as data (a wrong type, a value out of range, an unknown key) and the
//! path of the key, so that every message names `section.key` in one line
//! without parsing any message's text.

use crate::range::{Ranged, Unit};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

/// Why the file's settings were refused, and where.
#[derive(Debug)]
pub(crate) struct FileError {
    /// The key's path, outermost first: `race`, `attempt-delay`; an index
    /// for an item of a list.
    path: Vec<Segment>,
    problem: Problem,
}

/// One step of a key's path.
#[derive(Debug)]
enum Segment {
    /// A table's key.
    Key(String),
    /// An array's index.
    Index(usize),
}

#[derive(Debug)]
enum Problem {
    /// A value of the wrong TOML type.
    WrongType { expected: String, found: &'static str },
    /// A number outside its bounds.
    OutOfRange { expected: String, found: String },
    /// A string that does not parse: the parser's reason.
    Invalid(String),
    /// A key no section has (or, at the top, a section that does not exist).
    UnknownKey {
        key: String,
        known: &'static [&'static str],
    },
}

impl FileError {
    fn new(problem: Problem) -> Self {
        FileError {
            path: Vec::new(),
            problem,
        }
    }

    /// The error, inside `segment` of the path.
    fn within(mut self, segment: Segment) -> Self {
        self.path.insert(0, segment);
        self
    }

    /// `race.attempt-delay`, `policy.allow[0]`.
    fn path(&self) -> String {
        let mut path = String::new();
        for segment in &self.path {
            match segment {
                Segment::Key(key) if path.is_empty() => path.push_str(key),
                Segment::Key(key) => {
                    path.push('.');
                    path.push_str(key);
                }
                Segment::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        path
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path();
        match &self.problem {
            Problem::WrongType { expected, found } => write!(f, "`{path}` must be {expected}, not a {found}"),
            Problem::OutOfRange { expected, found } => write!(f, "`{path}` must be {expected}, not {found}"),
            Problem::Invalid(why) => write!(f, "`{path}`: {why}"),
            Problem::UnknownKey { key, known } if self.path.is_empty() => {
                write!(f, "unknown section `[{key}]` (expected {})", sections(known))
            }
            Problem::UnknownKey { key, known } => {
                write!(
                    f,
                    "unknown key `{path}.{key}` (known in [{path}]: {})",
                    known.join(", ")
                )
            }
        }
    }
}

/// `[policy], [dns] or [limits]`.
pub(crate) fn sections(names: &[&str]) -> String {
    let listed: Vec<String> = names.iter().map(|n| format!("[{n}]")).collect();
    match listed.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => listed.join(""),
    }
}

impl std::error::Error for FileError {}

impl de::Error for FileError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::new(Problem::Invalid(msg.to_string()))
    }

    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::new(Problem::WrongType {
            expected: expected.to_string(),
            found: type_name(&unexpected),
        })
    }

    fn invalid_value(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        let found = match unexpected {
            de::Unexpected::Signed(n) => n.to_string(),
            de::Unexpected::Unsigned(n) => n.to_string(),
            other => other.to_string(),
        };
        Self::new(Problem::OutOfRange {
            expected: expected.to_string(),
            found,
        })
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::new(Problem::UnknownKey {
            key: field.to_owned(),
            known: expected,
        })
    }
}

/// A TOML type's name, as toml's own messages write it.
fn type_name(unexpected: &de::Unexpected<'_>) -> &'static str {
    match unexpected {
        de::Unexpected::Bool(_) => "boolean",
        de::Unexpected::Signed(_) | de::Unexpected::Unsigned(_) => "integer",
        de::Unexpected::Float(_) => "float",
        de::Unexpected::Str(_) | de::Unexpected::Char(_) => "string",
        de::Unexpected::Seq => "array",
        de::Unexpected::Map => "table",
        _ => "datetime",
    }
}

/// Deserializes `T` from a parsed TOML value.
pub(crate) fn from_value<'de, T: serde::Deserialize<'de>>(value: &'de toml::Value) -> Result<T, FileError> {
    T::deserialize(Value(value))
}

/// A serde deserializer over a parsed TOML value.
#[derive(Clone, Copy)]
struct Value<'a>(&'a toml::Value);

impl<'de> Deserializer<'de> for Value<'de> {
    type Error = FileError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FileError> {
        match self.0 {
            toml::Value::String(s) => visitor.visit_borrowed_str(s),
            toml::Value::Integer(n) => visitor.visit_i64(*n),
            toml::Value::Float(x) => visitor.visit_f64(*x),
            toml::Value::Boolean(b) => visitor.visit_bool(*b),
            toml::Value::Datetime(_) => Err(de::Error::invalid_type(de::Unexpected::Other("datetime"), &visitor)),
            toml::Value::Array(items) => visitor.visit_seq(Items {
                items: items.iter(),
                index: 0,
            }),
            toml::Value::Table(table) => visitor.visit_map(Entries {
                entries: table.iter(),
                key: None,
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FileError> {
        // A key that is present has a value: TOML has no null.
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, FileError> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// A table's entries, each value's errors placed under its key.
struct Entries<'a> {
    entries: toml::map::Iter<'a, String, toml::Value>,
    key: Option<&'a str>,
    value: Option<&'a toml::Value>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = FileError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, FileError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.key = Some(key);
        self.value = Some(value);
        let key: &'de str = key;
        seed.deserialize(de::value::BorrowedStrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, FileError> {
        let (Some(key), Some(value)) = (self.key.take(), self.value.take()) else {
            return Err(de::Error::custom("a value without its key"));
        };
        seed.deserialize(Value(value))
            .map_err(|e| e.within(Segment::Key(key.to_owned())))
    }
}

/// An array's items, each item's errors placed under its index.
struct Items<'a> {
    items: std::slice::Iter<'a, toml::Value>,
    index: usize,
}

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = FileError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, FileError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        seed.deserialize(Value(item))
            .map(Some)
            .map_err(|e| e.within(Segment::Index(index)))
    }
}

/// A bounded number: an integer within its bounds.
impl<'de, U: Unit, const MIN: u64, const MAX: u64> serde::Deserialize<'de> for Ranged<U, MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Number<U, const MIN: u64, const MAX: u64>(PhantomData<U>);

        /// The bounds in words, for a value out of them.
        struct Bounds(String);

        impl de::Expected for Bounds {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<U: Unit, const MIN: u64, const MAX: u64> Visitor<'_> for Number<U, MIN, MAX> {
            type Value = Ranged<U, MIN, MAX>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&Ranged::<U, MIN, MAX>::expected_type())
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                let out = || {
                    E::invalid_value(
                        de::Unexpected::Signed(n),
                        &Bounds(Ranged::<U, MIN, MAX>::expected_range()),
                    )
                };
                let n = u64::try_from(n).map_err(|_| out())?;
                Ranged::new(n).map_err(|_| out())
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ranged::new(n).map_err(|_| {
                    E::invalid_value(
                        de::Unexpected::Unsigned(n),
                        &Bounds(Ranged::<U, MIN, MAX>::expected_range()),
                    )
                })
            }
        }

        d.deserialize_any(Number(PhantomData))
    }
}

/// What a setting read from a string is, for messages: `a commit stage`,
/// and in the plural for a list, `allow rules`.
pub(crate) trait Described: FromStr {
    /// One of them, with its article.
    const WHAT: &'static str;
    /// Several of them.
    const WHAT_LIST: &'static str;
}

/// A string that parses as `T`, the parser's reason naming what is wrong.
/// Alone it says what it is (`a string (a commit stage)`); in a list, the
/// list says it.
struct Parse<T> {
    in_list: bool,
    parsed: PhantomData<T>,
}

impl<T> Parse<T> {
    fn new(in_list: bool) -> Self {
        Parse {
            in_list,
            parsed: PhantomData,
        }
    }
}

impl<T: Described> Visitor<'_> for Parse<T>
where
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.in_list {
            f.write_str("a string")
        } else {
            write!(f, "a string ({})", T::WHAT)
        }
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        s.parse().map_err(E::custom)
    }
}

impl<'de, T: Described> DeserializeSeed<'de> for Parse<T>
where
    T::Err: fmt::Display,
{
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }
}

/// `key = "text"`, parsed as `T` (for `#[serde(deserialize_with)]`).
pub(crate) fn text<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Described,
    T::Err: fmt::Display,
{
    Parse::new(false).deserialize(d).map(Some)
}

/// `key = ["text", ...]`, each parsed as `T` (for
/// `#[serde(deserialize_with)]`).
pub(crate) fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Described,
    T::Err: fmt::Display,
{
    struct List<T>(PhantomData<T>);

    impl<'de, T: Described> Visitor<'de> for List<T>
    where
        T::Err: fmt::Display,
    {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of strings ({})", T::WHAT_LIST)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(Parse::new(true))? {
                items.push(item);
            }
            Ok(items)
        }
    }

    d.deserialize_any(List(PhantomData))
}

/// `key = true` or `false` (for `#[serde(deserialize_with)]`).
pub(crate) fn switch<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct Switch;

    impl Visitor<'_> for Switch {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false")
        }

        fn visit_bool<E: de::Error>(self, b: bool) -> Result<bool, E> {
            Ok(b)
        }
    }

    d.deserialize_any(Switch).map(Some)
}
