//! Schemas of the words cfgd's names are made of — namespace, name, list
//! prefix, schema pattern — for the OpenAPI document `cfgd-server` serves
//! (`openapi` feature). Each is a JSON Schema `pattern` and `maxLength`; the
//! tests below hold them equal to [`validate_namespace`](crate::validate_namespace)
//! and its siblings, so that a client generated from the document refuses
//! exactly what the server would.
//!
//! These types describe strings only: nothing takes or returns them.

use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

// A segment is `[A-Za-z0-9._-]+` but not `.` or `..`: ECMA-262 has
// look-ahead, but not every OpenAPI tool's regex engine does, hence three
// alternatives: no leading dot, one dot and a non-dot, two dots and more.
macro_rules! segment {
    () => {
        r"([A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)"
    };
}

const NAMESPACE: &str = "^[a-z0-9][a-z0-9._-]{0,62}$";
const NAME: &str = concat!("^", segment!(), "(/", segment!(), ")*$");
const PREFIX: &str = concat!("^(", segment!(), "/)*[A-Za-z0-9._-]*$");
const PREFIX_STAR: &str = concat!("^(", segment!(), "/)*[A-Za-z0-9._-]*\\*$");

fn string(description: &str, pattern: &str, max: usize, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .max_length(Some(max))
        .examples([example])
}

/// Implements the schema traits for a word: `$schema` its builder.
macro_rules! word {
    ($(#[$doc:meta])* $word:ident => $schema:expr) => {
        $(#[$doc])*
        pub struct $word;

        impl PartialSchema for $word {
            fn schema() -> RefOr<Schema> {
                Schema::from($schema).into()
            }
        }

        impl ToSchema for $word {}
    };
}

word! {
    /// A namespace: `[a-z0-9][a-z0-9._-]{0,62}`.
    Namespace => string("A namespace", NAMESPACE, 63, "checkout").build()
}

word! {
    /// A name: segments of `A-Z a-z 0-9 . _ -` joined by `/`, no `.` or
    /// `..` segment, at most 256 bytes.
    Name => string("A name: segments of A-Z a-z 0-9 . _ - joined by /, no . or .. segment", NAME, 256, "db/main").build()
}

word! {
    /// What a name may start with: whole segments and `/`, then any part
    /// of one (empty: every name).
    Prefix => string("What a name starts with (empty: every name)", PREFIX, 256, "db/").build()
}

word! {
    /// A schema's or a policy's pattern: a name, or a prefix and `*`.
    Pattern => AnyOfBuilder::new()
        .description(Some("A name, or a prefix and *"))
        .item(string("A name", NAME, 256, "db/main").build())
        .item(string("A prefix and *", PREFIX_STAR, 257, "db/*").build())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn validator<T: PartialSchema>() -> jsonschema::Validator {
        let schema = serde_json::to_value(T::schema()).unwrap();
        jsonschema::draft202012::new(&schema).unwrap()
    }

    /// Strings from the characters names are made of and some they are not.
    fn words() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9./*_-]{0,12}",
            "[A-Za-z0-9./_-]{0,6}(/[.]{0,3}[a-z]{0,2}){0,4}[*]?",
            "[a-z. /\u{84}é*]{0,6}",
            "[a-z]{250,260}",
        ]
    }

    fn agree<T: PartialSchema>(word: &str, valid: bool) -> Result<(), TestCaseError> {
        let described = validator::<T>().is_valid(&json!(word));
        prop_assert_eq!(
            described,
            valid,
            "{:?} ({})",
            word,
            std::any::type_name::<T>()
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn the_patterns_accept_what_the_checks_accept(word in words()) {
            agree::<Namespace>(&word, crate::validate_namespace(&word).is_ok())?;
            agree::<Name>(&word, crate::validate_name(&word).is_ok())?;
            agree::<Prefix>(&word, crate::validate_prefix(&word).is_ok())?;
            agree::<Pattern>(&word, crate::schema::validate_pattern(&word).is_ok())?;
        }
    }

    #[test]
    fn edge_cases_agree() {
        for word in [
            "", ".", "..", "...", ".env", "a/.", "a/..", "a/...", "a//b", "/a", "a/", "*", "a*",
            "a/*", "./*", "../*", "a/./b", "a/.b", "db/main", "db/*x", "é",
        ] {
            for check in [
                agree::<Namespace>(word, crate::validate_namespace(word).is_ok()),
                agree::<Name>(word, crate::validate_name(word).is_ok()),
                agree::<Prefix>(word, crate::validate_prefix(word).is_ok()),
                agree::<Pattern>(word, crate::schema::validate_pattern(word).is_ok()),
            ] {
                check.unwrap();
            }
        }
    }
}
