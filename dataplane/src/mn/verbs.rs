//! Verb execution on the pool: the serving side of every one-sided verb.
//!
//! Whatever carries a verb to the memory node — the local fabric in this process, the tcp verbs
//! server, a test harness — runs it through these functions, so every backend checks and executes
//! verbs the same way. The rdma backend's NIC executes verbs itself; its initiator runs the same
//! checks before posting, because a verb the NIC refuses would break the queue pair.
//!
//! Invariant: every verb is checked before it touches memory — sizes against
//! [`VERB_BYTES_MAX`], bounds against the region (the whole pool), 8-byte alignment for CAS and
//! FAA — and a bad verb returns an error having changed nothing.

use dinomo_pmem::Backend;

use crate::fabric::{CompletionData, VERB_BYTES_MAX, Verb, VerbError};

/// Checks a READ or WRITE of `len` bytes at `offset` against a region of `region` bytes.
pub fn check_range(region: u64, offset: u64, len: u64) -> Result<(), VerbError> {
    if len > VERB_BYTES_MAX {
        return Err(VerbError::TooLarge(len));
    }
    match offset.checked_add(len) {
        Some(end) if end <= region => Ok(()),
        _ => Err(VerbError::OutOfBounds {
            offset,
            len,
            region,
        }),
    }
}

/// Checks a CAS or FAA on the word at `offset` against a region of `region` bytes.
pub fn check_word(region: u64, offset: u64) -> Result<(), VerbError> {
    if !offset.is_multiple_of(8) {
        return Err(VerbError::Misaligned(offset));
    }
    check_range(region, offset, 8)
}

/// Reads `dst.len()` bytes at `offset` after checking them.
pub fn execute_read(backend: &dyn Backend, offset: u64, dst: &mut [u8]) -> Result<(), VerbError> {
    check_range(backend.len(), offset, dst.len() as u64)?;
    backend.read(offset, dst);
    Ok(())
}

/// Writes `data` at `offset` after checking it; with `persist`, the bytes are persistent when
/// this returns.
pub fn execute_write(
    backend: &dyn Backend,
    offset: u64,
    data: &[u8],
    persist: bool,
) -> Result<(), VerbError> {
    check_range(backend.len(), offset, data.len() as u64)?;
    if !data.is_empty() {
        backend.write(offset, data);
        if persist {
            backend.persist(offset, data.len() as u64);
        }
    }
    Ok(())
}

/// Compare-and-swap after checking; returns the old value whether or not it swapped.
pub fn execute_cas(
    backend: &dyn Backend,
    offset: u64,
    expected: u64,
    new: u64,
) -> Result<u64, VerbError> {
    check_word(backend.len(), offset)?;
    Ok(match backend.compare_exchange(offset, expected, new) {
        Ok(old) | Err(old) => old,
    })
}

/// Fetch-and-add after checking; returns the old value.
pub fn execute_faa(backend: &dyn Backend, offset: u64, add: u64) -> Result<u64, VerbError> {
    check_word(backend.len(), offset)?;
    Ok(backend.fetch_add(offset, add))
}

/// Executes one one-sided verb on `backend`. RPCs are not one-sided and are refused here.
pub fn execute(backend: &dyn Backend, verb: &Verb) -> Result<CompletionData, VerbError> {
    match verb {
        Verb::Read { remote, len } => {
            check_range(backend.len(), remote.get(), u64::from(*len))?;
            let mut bytes = vec![0u8; *len as usize];
            execute_read(backend, remote.get(), &mut bytes)?;
            Ok(CompletionData::Bytes(bytes))
        }
        Verb::Write {
            remote,
            data,
            persist,
        } => execute_write(backend, remote.get(), data, *persist).map(|()| CompletionData::None),
        Verb::Cas {
            remote,
            expected,
            new,
        } => execute_cas(backend, remote.get(), *expected, *new).map(CompletionData::Word),
        Verb::Faa { remote, add } => {
            execute_faa(backend, remote.get(), *add).map(CompletionData::Word)
        }
        Verb::Rpc { .. } => Err(VerbError::Refused("an RPC is not a one-sided verb".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_reject_before_touching_memory() {
        assert_eq!(check_range(64, 60, 4), Ok(()));
        assert_eq!(
            check_range(64, 61, 4),
            Err(VerbError::OutOfBounds {
                offset: 61,
                len: 4,
                region: 64
            })
        );
        assert!(matches!(
            check_range(64, u64::MAX, 2),
            Err(VerbError::OutOfBounds { .. })
        ));
        assert_eq!(
            check_range(u64::MAX, 0, VERB_BYTES_MAX + 1),
            Err(VerbError::TooLarge(VERB_BYTES_MAX + 1))
        );
        assert_eq!(check_word(64, 4), Err(VerbError::Misaligned(4)));
        assert!(matches!(
            check_word(64, 64),
            Err(VerbError::OutOfBounds { .. })
        ));
        assert_eq!(check_word(64, 56), Ok(()));
    }
}
