//! What a submission was, carried in its `user_data` and recovered from its
//! completion.
//!
//! Layout of the 64 bits: the operation's kind (8 bits), a 24-bit field and
//! a 32-bit field whose meaning depends on the kind: a connection's slot
//! and generation, a listener index, or a descriptor and a length.

use std::os::fd::RawFd;

/// Generations of a slot wrap within 24 bits.
pub(super) const GEN_MASK: u32 = (1 << 24) - 1;

/// The most bytes a linked send may be asked to send (the 24-bit field). A
/// reply is far smaller: the policy is capped at
/// [`flashpolicy_proto::policy::MAX_POLICY_LEN`].
pub(super) const MAX_LINKED_SEND: u32 = GEN_MASK;
const _: () = assert!(flashpolicy_proto::policy::MAX_POLICY_LEN < MAX_LINKED_SEND as usize);

/// One use of a connection slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ConnRef {
    /// The slab key (and receive buffer index).
    pub(super) slot: u32,
    /// Which use of the slot (wraps within [`GEN_MASK`]).
    pub(super) generation: u32,
}

/// A submission, as its completion names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// The multishot accept of listener `listener`.
    Accept { listener: u32 },
    /// A recv into the connection's receive buffer.
    Recv(ConnRef),
    /// A `SEND_ZC` of (the rest of) the connection's reply.
    SendZc(ConnRef),
    /// The send of a linked send → close: `len` bytes on `fd`. Posts a
    /// completion only when it fails, and then the close never ran and the
    /// descriptor is still ours; the slot was freed at submission, so the
    /// operation names the descriptor.
    LinkedSend { fd: RawFd, len: u32 },
    /// The close of a linked send → close (a completion only on failure).
    LinkedClose { fd: RawFd },
    /// A stand-alone close (a completion only on failure).
    Close,
    /// An `ASYNC_CANCEL` (a completion only on failure).
    Cancel,
    /// The poll on the wake-up eventfd.
    Wake,
    /// The accept back-off timer.
    Backoff,
    /// The final `IO_DRAIN` barrier.
    Drain,
}

impl Op {
    /// The `user_data` of a submission of this operation.
    pub(super) fn encode(self) -> u64 {
        let (kind, mid, low): (u8, u32, u32) = match self {
            Op::Accept { listener } => (1, 0, listener),
            Op::Recv(c) => (2, c.generation, c.slot),
            Op::SendZc(c) => (3, c.generation, c.slot),
            Op::LinkedSend { fd, len } => (4, len, fd as u32),
            Op::LinkedClose { fd } => (5, 0, fd as u32),
            Op::Close => (6, 0, 0),
            Op::Cancel => (7, 0, 0),
            Op::Wake => (8, 0, 0),
            Op::Backoff => (9, 0, 0),
            Op::Drain => (10, 0, 0),
        };
        (u64::from(kind) << 56) | (u64::from(mid & GEN_MASK) << 32) | u64::from(low)
    }

    /// The operation a completion's `user_data` names, if it is one of ours.
    pub(super) fn decode(user_data: u64) -> Option<Op> {
        let kind = (user_data >> 56) as u8;
        let mid = ((user_data >> 32) as u32) & GEN_MASK;
        let low = user_data as u32;
        let conn = ConnRef {
            slot: low,
            generation: mid,
        };
        Some(match kind {
            1 => Op::Accept { listener: low },
            2 => Op::Recv(conn),
            3 => Op::SendZc(conn),
            4 => Op::LinkedSend {
                fd: low as RawFd,
                len: mid,
            },
            5 => Op::LinkedClose { fd: low as RawFd },
            6 => Op::Close,
            7 => Op::Cancel,
            8 => Op::Wake,
            9 => Op::Backoff,
            10 => Op::Drain,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_round_trips_at_its_limits() {
        let conn = ConnRef {
            slot: u32::MAX,
            generation: GEN_MASK,
        };
        let ops = [
            Op::Accept { listener: 0 },
            Op::Accept { listener: u32::MAX },
            Op::Recv(conn),
            Op::SendZc(ConnRef {
                slot: 0,
                generation: 0,
            }),
            Op::LinkedSend {
                fd: RawFd::MAX,
                len: MAX_LINKED_SEND,
            },
            Op::LinkedClose { fd: 3 },
            Op::Close,
            Op::Cancel,
            Op::Wake,
            Op::Backoff,
            Op::Drain,
        ];
        let mut seen = std::collections::HashSet::new();
        for op in ops {
            let ud = op.encode();
            assert_eq!(Op::decode(ud), Some(op), "{ud:#x}");
            assert!(seen.insert(ud), "{op:?} shares its user_data");
        }
        // Zero (what a stray completion would carry) is none of ours.
        assert_eq!(Op::decode(0), None);
        assert_eq!(Op::decode(u64::MAX), None);
    }

    #[test]
    fn a_generation_past_the_mask_wraps() {
        let op = Op::Recv(ConnRef {
            slot: 1,
            generation: GEN_MASK + 5,
        });
        assert_eq!(
            Op::decode(op.encode()),
            Some(Op::Recv(ConnRef {
                slot: 1,
                generation: 4
            }))
        );
    }
}
