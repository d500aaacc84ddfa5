//! YAML paths written out only when a diagnostic names one. Validating a table of 100,000 routes
//! builds millions of paths and reports a handful: formatting each one eagerly was an eighth of
//! the instructions of loading such a table.

use std::fmt::{self, Display};

/// `parent` followed by `.field`, `[index]` or `["key"]`.
#[derive(Clone, Copy)]
pub(crate) enum At<'a> {
    Field(&'a dyn Display, &'a str),
    Index(&'a dyn Display, usize),
    Key(&'a dyn Display, &'a str),
}

impl Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Field(parent, name) => write!(f, "{parent}.{name}"),
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
            At::Key(parent, key) => write!(f, "{parent}[{key:?}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_reads_as_the_yaml_path_it_stands_for() {
        let root = "spec.http";
        let rule = At::Index(&root, 3);
        let route = At::Field(&rule, "route");
        let header = At::Key(&route, "x-a");
        assert_eq!(header.to_string(), r#"spec.http[3].route["x-a"]"#);
    }
}
