//! Append-only segment files: where a `SegmentStore`
//! keeps block bytes.
//!
//! A segment is a file of block bytes with no framing: the index (in redb)
//! says where each block starts and how long it is, and a block's digest is
//! its checksum. Segments are numbered from 1 and named by their number in
//! fixed-width hex, so that a directory listing sorts them.
//!
//! Only the [`Appender`] writes, always at the end of the newest segment,
//! and it fsyncs before the index is told about the new bytes. Whatever lies
//! past the end the index recorded was never acknowledged, so
//! [`Appender::recover`] cuts it off.
//!
//! Appends bypass the page cache (`O_DIRECT`) where the file system allows
//! it: each batch then starts on a 4 KiB boundary, its blocks laid end to
//! end, with a hole of at most 4 KiB before it. Elsewhere (tmpfs), batches
//! are written through the page cache, end to end.

use crate::{Result, StoreError};
use bytes::Bytes;
use lru::LruCache;
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// File name suffix of a segment.
const SUFFIX: &str = ".seg";

/// Encoded length of a [`Location`]: segment (8) ‖ offset (8) ‖ length (4).
pub(crate) const LOCATION_LEN: usize = 8 + 8 + 4;

/// Read handles kept open. Readers mostly touch the newest segments (live
/// tail, recent catch-up); a handle per segment of a long history would run
/// into the process's file limit (often 1,024).
const READ_HANDLES: NonZeroUsize = NonZeroUsize::new(64).expect("nonzero");

/// Starts writing `len` bytes of `file` at `offset` to the disk, without
/// waiting (buffered appends). A large batch is written by several calls
/// (a thousand blocks each): the disk then works on the first ones while
/// the next are copied. Otherwise the final fsync writes the whole batch while nothing else
/// happens: a quarter of the append time in a bootstrap from an archive,
/// halved by this (`docs/benchmarks.md`). Only a hint: a failure shows in
/// the fsync that follows.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: usize) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is `file`'s, open for the whole call, and
    // sync_file_range reads nothing but its integer arguments.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: usize) {}

/// Where a block's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    pub fn encode(&self) -> [u8; LOCATION_LEN] {
        let mut out = [0u8; LOCATION_LEN];
        out[..8].copy_from_slice(&self.segment.to_be_bytes());
        out[8..16].copy_from_slice(&self.offset.to_be_bytes());
        out[16..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Location> {
        let corrupt = || StoreError::Corrupt {
            what: "block location",
            reason: format!("{} bytes, expected {LOCATION_LEN}", bytes.len()),
        };
        let bytes: &[u8; LOCATION_LEN] = bytes.try_into().map_err(|_| corrupt())?;
        let (segment, rest) = bytes.split_at(8);
        let (offset, len) = rest.split_at(8);
        let location = Location {
            segment: u64::from_be_bytes(segment.try_into().map_err(|_| corrupt())?),
            offset: u64::from_be_bytes(offset.try_into().map_err(|_| corrupt())?),
            len: u32::from_be_bytes(len.try_into().map_err(|_| corrupt())?),
        };
        // `end` must not overflow: a damaged index is an error, not a panic.
        if location
            .offset
            .checked_add(u64::from(location.len))
            .is_none()
        {
            return Err(StoreError::Corrupt {
                what: "block location",
                reason: format!("{location:?} ends past 2^64"),
            });
        }
        Ok(location)
    }

    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

pub(crate) fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016x}{SUFFIX}"))
}

/// The segment numbers of the files in `dir`; other files are ignored.
pub(crate) fn list(dir: &Path) -> Result<BTreeSet<u64>> {
    let entries = std::fs::read_dir(dir).map_err(io_error("list", dir))?;
    let mut segments = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name();
        let Some(number) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue;
        };
        if let Ok(segment) = u64::from_str_radix(number, 16) {
            segments.insert(segment);
        }
    }
    Ok(segments)
}

/// Deletes segment files. A file already gone is not an error.
pub(crate) fn remove(dir: &Path, segments: impl IntoIterator<Item = u64>) -> Result<()> {
    for segment in segments {
        let path = segment_path(dir, segment);
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error("delete", &path)(err));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The writing end of the segment files: the newest segment and its end.
#[derive(Debug)]
pub(crate) struct Appender {
    dir: PathBuf,
    /// Start a new segment before a batch that would take this one past this
    /// size. Segments are the unit of deletion when pruning.
    segment_bytes: u64,
    segment: u64,
    end: u64,
    /// Open for appending; `None` until the segment's file exists.
    file: Option<File>,
    /// The newest segment opened for direct writes, once it is written.
    direct: Option<File>,
    /// Whether appends go around the page cache; cleared for good where
    /// the file system refuses `O_DIRECT` (tmpfs), which then falls back
    /// to buffered writes.
    pub(crate) direct_io: bool,
    /// Where a direct append is assembled: aligned, reused between appends.
    staging: Vec<u8>,
}

/// Offsets, lengths and buffer addresses of direct writes are multiples of
/// this (the largest logical block size of common disks).
const DIRECT_ALIGN: usize = 4096;

/// Staging kept between appends at most. A larger batch (a catch-up batch
/// is at most a few tens of MB) gets a buffer of its own, freed after.
const MAX_KEPT_STAGING: usize = 64 << 20;

impl Appender {
    /// Reopens the log after a restart. `log_end` is the newest segment and
    /// the end of its acknowledged bytes, as the index recorded them (`None`
    /// for a new store); `indexed` are the segments the index knows of.
    ///
    /// Bytes past `log_end` were never acknowledged and are cut off, and
    /// segment files the index does not know of are deleted: both are what a
    /// crash in the middle of a write or a prune leaves behind. A segment the
    /// index knows of that is missing or shorter than recorded is
    /// [`StoreError::Corrupt`].
    pub fn recover(
        dir: &Path,
        segment_bytes: u64,
        log_end: Option<(u64, u64)>,
        indexed: &BTreeSet<u64>,
    ) -> Result<Appender> {
        let (segment, end) = log_end.unwrap_or((1, 0));
        let on_disk = list(dir)?;
        let missing = |segment: u64, reason: String| StoreError::Corrupt {
            what: "segment",
            reason: format!("{}: {reason}", segment_path(dir, segment).display()),
        };
        for &known in indexed.iter().filter(|&&s| s != segment) {
            if !on_disk.contains(&known) {
                return Err(missing(known, "the file is missing".to_string()));
            }
        }
        remove(
            dir,
            on_disk
                .iter()
                .copied()
                .filter(|s| *s != segment && !indexed.contains(s)),
        )?;

        let path = segment_path(dir, segment);
        let file = if on_disk.contains(&segment) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_error("open", &path))?;
            let len = file.metadata().map_err(io_error("stat", &path))?.len();
            if len < end {
                return Err(missing(
                    segment,
                    format!("{len} bytes, but {end} were written"),
                ));
            }
            if len > end {
                // A torn or unacknowledged tail.
                file.set_len(end).map_err(io_error("truncate", &path))?;
                file.sync_all().map_err(io_error("sync", &path))?;
            }
            Some(file)
        } else if end > 0 {
            return Err(missing(
                segment,
                format!("the file is missing, but {end} bytes were written"),
            ));
        } else {
            None
        };
        Ok(Appender {
            dir: dir.to_path_buf(),
            segment_bytes,
            segment,
            end,
            file,
            direct: None,
            direct_io: cfg!(target_os = "linux"),
            staging: Vec::new(),
        })
    }

    /// The newest segment and the end of its bytes.
    pub fn position(&self) -> (u64, u64) {
        (self.segment, self.end)
    }

    /// Appends `blocks` to the newest segment, starting a new segment first
    /// if they would take it past its size, and makes them durable. Returns
    /// each block's location.
    ///
    /// On error the appender's position is unchanged (or, if the error came
    /// after starting a new segment, at the start of that empty segment):
    /// bytes that may have reached the file past it are overwritten by the
    /// next append, or cut off when the store is reopened. After success the position stays
    /// past the new bytes even if the index then fails to record them: they
    /// are dead space, never overwritten, because the index might have
    /// recorded them after all.
    pub fn append(&mut self, blocks: &[&Bytes]) -> Result<Vec<Location>> {
        let total: u64 = blocks.iter().map(|b| b.len() as u64).sum();
        if self.end > 0 && self.end + total > self.segment_bytes {
            self.rotate()?;
        }
        let path = segment_path(&self.dir, self.segment);
        if self.file.is_none() {
            self.file = Some(self.create(&path)?);
        }
        if self.direct_io {
            // Direct writes start on a block boundary.
            let begin = self.end.next_multiple_of(DIRECT_ALIGN as u64);
            let locations = self.lay_out(&path, begin, blocks)?;
            match self.append_direct(&path, blocks, begin, total) {
                Ok(()) => {
                    self.end = begin + total;
                    return Ok(locations);
                }
                // Refused by the file system (nothing was written): buffered
                // from now on.
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                    self.direct_io = false;
                    self.direct = None;
                }
                Err(err) => return Err(io_error("append to", &path)(err)),
            }
        }
        let locations = self.lay_out(&path, self.end, blocks)?;
        let file = self.file.as_mut().expect("created above");
        // One gathering write for the whole batch (a mainnet commit is a
        // hundred small blocks): a write call per block cost a quarter of
        // an observer's CPU while catching up.
        file.seek(SeekFrom::Start(self.end))
            .map_err(io_error("append to", &path))?;
        let mut slices: Vec<IoSlice<'_>> = blocks.iter().map(|b| IoSlice::new(b)).collect();
        let mut remaining = &mut slices[..];
        let mut written_to = self.end;
        while !remaining.is_empty() {
            // std passes at most IOV_MAX slices per call.
            match file.write_vectored(remaining) {
                Ok(0) => {
                    return Err(io_error("append to", &path)(
                        std::io::ErrorKind::WriteZero.into(),
                    ))
                }
                Ok(written) => {
                    IoSlice::advance_slices(&mut remaining, written);
                    start_writeback(file, written_to, written);
                    written_to += written as u64;
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(io_error("append to", &path)(err)),
            }
        }
        file.sync_data().map_err(io_error("sync", &path))?;
        self.end += total;
        Ok(locations)
    }

    /// Where `blocks` lie when laid end to end from `begin` in the newest
    /// segment (at `path`).
    fn lay_out(&self, path: &Path, begin: u64, blocks: &[&Bytes]) -> Result<Vec<Location>> {
        let mut locations = Vec::with_capacity(blocks.len());
        let mut offset = begin;
        for block in blocks {
            let len = u32::try_from(block.len()).map_err(|_| StoreError::Io {
                operation: "append to",
                path: path.display().to_string(),
                reason: format!("a block of {} bytes", block.len()),
            })?;
            locations.push(Location {
                segment: self.segment,
                offset,
                len,
            });
            offset += u64::from(len);
        }
        Ok(locations)
    }

    /// Writes `blocks` (`total` bytes) at `begin`, a [`DIRECT_ALIGN`]
    /// boundary, around the page cache: copied into the aligned staging
    /// buffer, padded with zeros to a whole number of blocks. The file is
    /// then cut back to the last block's end, so that its length is the end,
    /// as after a buffered append (recovery checks it), and synced. Through
    /// the page cache, the kernel's copy cost a bootstrap more CPU than all
    /// its verification, and its rate swung with the host
    /// (`docs/benchmarks.md`).
    fn append_direct(
        &mut self,
        path: &Path,
        blocks: &[&Bytes],
        begin: u64,
        total: u64,
    ) -> std::io::Result<()> {
        if self.direct.is_none() {
            self.direct = Some(open_direct(path)?);
        }
        let len = usize::try_from(total).map_err(|_| std::io::Error::other("batch too large"))?;
        let staging = aligned(&mut self.staging, len.next_multiple_of(DIRECT_ALIGN));
        let mut at = 0;
        for block in blocks {
            staging[at..at + block.len()].copy_from_slice(block);
            at += block.len();
        }
        staging[at..].fill(0);
        let direct = self.direct.as_ref().expect("opened above");
        direct.write_all_at(staging, begin)?;
        if self.staging.capacity() > MAX_KEPT_STAGING {
            self.staging = Vec::new();
        }
        direct.set_len(begin + total)?;
        direct.sync_data()
    }

    /// Closes the newest segment and starts the next one.
    fn rotate(&mut self) -> Result<()> {
        let next = self.segment + 1;
        let path = segment_path(&self.dir, next);
        let file = self.create(&path)?;
        self.file = Some(file);
        self.direct = None;
        self.segment = next;
        self.end = 0;
        Ok(())
    }

    /// Creates a segment's file (or reopens one a failed append left) and
    /// makes its directory entry durable.
    fn create(&self, path: &Path) -> Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_error("create", path))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error("sync", &self.dir))?;
        Ok(file)
    }
}

/// Opens `path` for writes that bypass the page cache.
#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> std::io::Result<File> {
    Err(std::io::Error::from_raw_os_error(libc::EINVAL))
}

/// The first `len` bytes of `buffer` that start on a [`DIRECT_ALIGN`]
/// boundary, growing it first if they do not fit.
fn aligned(buffer: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buffer.len() < len + DIRECT_ALIGN {
        *buffer = vec![0; len + DIRECT_ALIGN];
    }
    let start = buffer.as_ptr().align_offset(DIRECT_ALIGN);
    &mut buffer[start..start + len]
}

/// Read handles of segment files, the most recently used kept open.
#[derive(Debug)]
pub(crate) struct Readers {
    dir: PathBuf,
    open: Mutex<LruCache<u64, Arc<File>>>,
}

impl Readers {
    pub fn new(dir: &Path) -> Readers {
        Readers {
            dir: dir.to_path_buf(),
            open: Mutex::new(LruCache::new(READ_HANDLES)),
        }
    }

    /// Reads `len` bytes at `offset` of `segment`.
    pub fn read(&self, segment: u64, offset: u64, len: usize) -> Result<Bytes> {
        let file = self.handle(segment)?;
        let path = segment_path(&self.dir, segment);
        let past_end = || StoreError::Corrupt {
            what: "segment",
            reason: format!(
                "{} ends before bytes {offset}..{} that the index points to",
                path.display(),
                offset.saturating_add(len as u64)
            ),
        };
        // Checked before allocating, so that a damaged index cannot make a
        // read allocate gigabytes.
        let size = file.metadata().map_err(io_error("stat", &path))?.len();
        if offset.saturating_add(len as u64) > size {
            return Err(past_end());
        }
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, offset).map_err(|err| {
            if err.kind() == std::io::ErrorKind::UnexpectedEof {
                past_end()
            } else {
                io_error("read", &path)(err)
            }
        })?;
        Ok(Bytes::from(bytes))
    }

    /// Closes the handles of deleted segments.
    pub fn forget(&self, segments: &[u64]) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for segment in segments {
            open.pop(segment);
        }
    }

    fn handle(&self, segment: u64) -> Result<Arc<File>> {
        // The cache is only a map of handles: a panic elsewhere cannot leave
        // it inconsistent, so a poisoned lock is still usable.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = open.get(&segment) {
            return Ok(file.clone());
        }
        let path = segment_path(&self.dir, segment);
        let file = Arc::new(File::open(&path).map_err(io_error("open", &path))?);
        open.put(segment, file.clone());
        Ok(file)
    }
}

fn io_error<'a>(
    operation: &'static str,
    path: &'a Path,
) -> impl Fn(std::io::Error) -> StoreError + 'a {
    move |err| StoreError::Io {
        operation,
        path: path.display().to_string(),
        reason: err.to_string(),
    }
}

#[cfg(test)]
mod tests;
