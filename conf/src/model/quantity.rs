//! Sizes as Kubernetes writes them (`resource.Quantity`): `64Mi`, `1Gi`, `500k`, `1048576`.

/// Parses a byte count: a whole number with an optional binary (`Ki`, `Mi`, `Gi`, `Ti`) or
/// decimal (`k`, `M`, `G`, `T`) suffix, as in Kubernetes resource quantities.
pub fn bytes(s: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size {s:?}; use a whole number of bytes or a quantity like 512Ki, 64Mi or 1Gi");
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let scale: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err(invalid()),
    };
    number.checked_mul(scale).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn binary_and_decimal_suffixes_scale_the_number() {
        assert_eq!(bytes("64Mi"), Ok(64 << 20));
        assert_eq!(bytes("1Gi"), Ok(1 << 30));
        assert_eq!(bytes("500k"), Ok(500_000));
        assert_eq!(bytes("1048576"), Ok(1_048_576));
    }

    #[test]
    fn fractions_unknown_suffixes_and_overflow_are_refused() {
        for bad in ["", "1.5Mi", "64MB", "-1", "Mi", "99999999999Ti"] {
            assert!(bytes(bad).is_err(), "{bad}");
        }
    }
}
