//! Parsing of PostgreSQL's array text output (`array_out`):
//! `{1,2,NULL}`, `{{1,2},{3,4}}`, `{"a,b","say \"hi\"","back\\slash"}`,
//! `{}`, and with lower bounds other than 1 a dimension decoration such as
//! `[0:1]={7,8}` or `[0:1][-1:0]={{1,2},{3,4}}`.
//!
//! `array_out` quotes an element when it is empty, spells `NULL` in any
//! case, or contains a brace, quote, backslash, the delimiter or white
//! space; inside quotes a backslash escapes the next character. So an
//! unquoted `NULL` is the null element and a quoted one is text.

use crate::error::DecodeError;
use crate::row::TypedValue;

/// PostgreSQL's limit on array dimensions (MAXDIM); deeper nesting is
/// corrupt input, and refusing it bounds the recursion.
const MAX_DIMENSIONS: usize = 6;

pub(crate) enum ArrayError {
    /// The text is not array output; the caller adds the type and text.
    Syntax(&'static str),
    /// An element's text is not valid for the element type.
    Element(DecodeError),
}

impl From<&'static str> for ArrayError {
    fn from(reason: &'static str) -> Self {
        ArrayError::Syntax(reason)
    }
}

/// Parses `text` as an array of `type_name` (e.g. `_int4`), converting each
/// non-null element with `element`. A multi-dimensional array becomes
/// nested [`TypedValue::Array`]s of the same `type_name`, one per level.
pub(crate) fn parse_array(
    type_name: &str,
    element_type: &str,
    text: &str,
    element: impl FnMut(&str) -> Result<TypedValue, DecodeError>,
) -> Result<TypedValue, ArrayError> {
    let mut parser = Parser {
        text,
        position: 0,
        // box is the one built-in type whose array delimiter is not a comma
        // (its own text contains commas).
        delimiter: if element_type == "box" { b';' } else { b',' },
        type_name,
        element,
        lower_bounds: Vec::new(),
    };
    let bounds = parser.dimension_decoration()?;
    parser.lower_bounds = bounds.iter().map(|&(lower, _)| lower).collect();
    let (elements, shape) = parser.level(0)?;
    if parser.position != text.len() {
        return Err("unexpected characters after the array".into());
    }
    if !bounds.is_empty() {
        let declared = bounds
            .iter()
            .map(|&(lower, upper)| i64::from(upper) - i64::from(lower) + 1);
        if bounds.len() != shape.len()
            || !declared
                .zip(&shape)
                .all(|(length, &actual)| i64::try_from(actual).is_ok_and(|actual| actual == length))
        {
            return Err("dimensions do not match the elements".into());
        }
    }
    Ok(TypedValue::Array {
        type_name: type_name.to_owned(),
        lower_bound: parser.lower_bound(0),
        elements,
    })
}

struct Parser<'a, F> {
    text: &'a str,
    position: usize,
    delimiter: u8,
    type_name: &'a str,
    element: F,
    lower_bounds: Vec<i32>,
}

impl<F: FnMut(&str) -> Result<TypedValue, DecodeError>> Parser<'_, F> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.position).copied()
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), ArrayError> {
        if self.peek() == Some(byte) {
            self.position += 1;
            Ok(())
        } else {
            Err(reason.into())
        }
    }

    fn lower_bound(&self, level: usize) -> i32 {
        self.lower_bounds.get(level).copied().unwrap_or(1)
    }

    /// `[lower:upper]` per dimension then `=`, or nothing.
    fn dimension_decoration(&mut self) -> Result<Vec<(i32, i32)>, ArrayError> {
        let mut bounds = Vec::new();
        if self.peek() != Some(b'[') {
            return Ok(bounds);
        }
        while self.peek() == Some(b'[') {
            if bounds.len() == MAX_DIMENSIONS {
                return Err("more than 6 dimensions".into());
            }
            self.position += 1;
            let lower = self.bound()?;
            self.expect(b':', "expected ':' in a dimension")?;
            let upper = self.bound()?;
            self.expect(b']', "expected ']' after a dimension")?;
            bounds.push((lower, upper));
        }
        self.expect(b'=', "expected '=' after the dimensions")?;
        Ok(bounds)
    }

    fn bound(&mut self) -> Result<i32, ArrayError> {
        let start = self.position;
        if self.peek() == Some(b'-') {
            self.position += 1;
        }
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.position += 1;
        }
        self.text[start..self.position]
            .parse()
            .map_err(|_| "expected a 32-bit array bound".into())
    }

    /// One `{...}` level: its elements and its shape (this level's length,
    /// then the lengths of the levels below).
    fn level(&mut self, level: usize) -> Result<(Vec<Option<TypedValue>>, Vec<usize>), ArrayError> {
        if level == MAX_DIMENSIONS {
            return Err("more than 6 dimensions".into());
        }
        self.expect(b'{', "expected '{'")?;
        let mut elements = Vec::new();
        if self.peek() == Some(b'}') {
            self.position += 1;
            // Only a whole array can be empty; PostgreSQL prints it as `{}`.
            return if level == 0 {
                Ok((elements, Vec::new()))
            } else {
                Err("empty sub-array".into())
            };
        }
        // The shape shared by every sub-array, once the first was read; None
        // while the elements are scalars.
        let mut inner_shape: Option<Vec<usize>> = None;
        loop {
            if self.peek() == Some(b'{') {
                if !elements.is_empty() && inner_shape.is_none() {
                    return Err("elements and sub-arrays mixed".into());
                }
                let (sub_elements, shape) = self.level(level + 1)?;
                if inner_shape
                    .as_ref()
                    .is_some_and(|expected| *expected != shape)
                {
                    return Err("sub-arrays of different lengths".into());
                }
                inner_shape = Some(shape);
                elements.push(Some(TypedValue::Array {
                    type_name: self.type_name.to_owned(),
                    lower_bound: self.lower_bound(level + 1),
                    elements: sub_elements,
                }));
            } else {
                if inner_shape.is_some() {
                    return Err("elements and sub-arrays mixed".into());
                }
                let value = self.element()?;
                elements.push(value);
            }
            match self.peek() {
                Some(byte) if byte == self.delimiter => self.position += 1,
                Some(b'}') => {
                    self.position += 1;
                    break;
                }
                _ => return Err("expected a delimiter or '}' after an element".into()),
            }
        }
        let mut shape = vec![elements.len()];
        shape.extend(inner_shape.unwrap_or_default());
        Ok((elements, shape))
    }

    /// A quoted or unquoted element; an unquoted `NULL` is `None`.
    fn element(&mut self) -> Result<Option<TypedValue>, ArrayError> {
        if self.peek() == Some(b'"') {
            self.position += 1;
            let text = self.quoted_rest()?;
            return (self.element)(&text).map(Some).map_err(ArrayError::Element);
        }
        let start = self.position;
        while let Some(byte) = self.peek() {
            if byte == self.delimiter || byte == b'}' {
                break;
            }
            if matches!(byte, b'{' | b'"' | b'\\') {
                return Err("unquoted element with a brace, quote or backslash".into());
            }
            self.position += 1;
        }
        // Stopped at an ASCII byte or the end: a character boundary.
        let raw = &self.text[start..self.position];
        match raw {
            "" => Err("empty unquoted element".into()),
            "NULL" => Ok(None),
            _ => (self.element)(raw).map(Some).map_err(ArrayError::Element),
        }
    }

    /// The rest of a quoted element after its opening quote, unescaped.
    fn quoted_rest(&mut self) -> Result<String, ArrayError> {
        let mut text = String::new();
        let mut start = self.position;
        loop {
            match self.peek() {
                None => return Err("unterminated quoted element".into()),
                Some(b'"') => {
                    text.push_str(&self.text[start..self.position]);
                    self.position += 1;
                    return Ok(text);
                }
                Some(b'\\') => {
                    text.push_str(&self.text[start..self.position]);
                    self.position += 1;
                    // The escaped character may be multi-byte; take it whole.
                    let escaped = self.text[self.position..]
                        .chars()
                        .next()
                        .ok_or("unterminated quoted element")?;
                    text.push(escaped);
                    self.position += escaped.len_utf8();
                    start = self.position;
                }
                Some(_) => self.position += 1,
            }
        }
    }
}
