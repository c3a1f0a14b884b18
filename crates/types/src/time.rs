//! The wall clock, in the unit of every timestamp of the model.

/// Now, in Unix milliseconds: the unit of block and commit timestamps and of
/// genesis times. A clock set before 1970 reads 0 rather than failing: the
/// caller then sees a time long past, which a schedule treats as "not due".
pub fn unix_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
