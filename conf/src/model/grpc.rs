//! gRPC status codes by name, as Istio's `abort.grpcStatus` names them
//! (<https://github.com/grpc/grpc/blob/master/doc/statuscodes.md>).

/// The status names, indexed by their code.
pub const STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The code of a status name (`UNAVAILABLE` → 14).
pub fn status_code(name: &str) -> Option<u8> {
    STATUS_NAMES.iter().position(|n| *n == name).and_then(|i| u8::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_map_to_their_codes() {
        assert_eq!(super::status_code("OK"), Some(0));
        assert_eq!(super::status_code("UNAVAILABLE"), Some(14));
        assert_eq!(super::status_code("UNAUTHENTICATED"), Some(16));
        assert_eq!(super::status_code("unavailable"), None);
    }
}
