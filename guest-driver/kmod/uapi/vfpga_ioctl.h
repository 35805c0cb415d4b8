/* SPDX-License-Identifier: MIT */
/*
 * vfpga character device interface: ioctls on /dev/vfpgaN.
 * Device structures (vfpga_info, vfpga_kernel_desc, vfpga_stats) come from
 * vfpga_abi.h and are passed through unchanged (little-endian). The ioctl
 * structures below are native-endian, 64-bit clean (no padding, user
 * addresses as __u64), so 32-bit processes use the same layout.
 *
 * Every ioctl returns 0 when the device answered; the device's verdict is
 * then in the structure's status field (VFPGA_S_*). A negative errno means
 * the request did not complete: EFAULT (bad user address), EINVAL (malformed
 * ioctl structure), EINTR (fatal signal while waiting), ENODEV (device
 * removed or reset), ENOMEM, EIO (device broke the protocol), ENOENT (a
 * registered buffer id this file does not have), EACCES (a read-only
 * registered buffer given as an output), ENOSPC (no registration slot left),
 * EOPNOTSUPP (registering memory of a file other than shmem or hugetlbfs).
 */
#ifndef _UAPI_VFPGA_IOCTL_H
#define _UAPI_VFPGA_IOCTL_H

#include <linux/ioctl.h>
#include <linux/types.h>
#include "vfpga_abi.h"

#define VFPGA_IOC_MAGIC 0xF6

/* vfpga_ioc_arg.flags: the buffer is bytes [addr, addr + value) of buffer buf_id. */
#define VFPGA_IOC_ARG_REGISTERED	_BITUL(0)

/*
 * A kernel argument: a scalar in value, or a buffer of value bytes: user
 * memory at addr, or with VFPGA_IOC_ARG_REGISTERED at offset addr of
 * registered buffer buf_id (VFPGA_IOC_REGISTER).
 */
struct vfpga_ioc_arg {
	__u8 kind;		/* VFPGA_ARG_* */
	__u8 ty;		/* VFPGA_T_* */
	__u16 flags;		/* 0 or VFPGA_IOC_ARG_REGISTERED (buffers only) */
	__u32 buf_id;		/* registered buffer id with VFPGA_IOC_ARG_REGISTERED, else 0 */
	__u64 value;		/* scalar bits, or buffer length in bytes */
	__u64 addr;		/* user address, or offset in the registered buffer */
};

/* VFPGA_IOC_RUN: run the session's kernel on user buffers, in place. */
struct vfpga_ioc_run {
	__u64 session;		/* in: from VFPGA_IOC_OPEN_SESSION */
	__u32 n_args;		/* in: entries used in args */
	__u32 flags;		/* in: 0 */
	struct vfpga_ioc_arg args[VFPGA_MAX_ARGS];	/* in */
	__u16 status;		/* out: VFPGA_S_* */
	__u16 segments;		/* out: descriptors of the chain (<= 65535), 0 if none built */
	__u32 detail;		/* out: argument index for VFPGA_S_BAD_ARGUMENT */
	__u64 written;		/* out: bytes the device wrote into output buffers */
	__u64 duration_ns;	/* out: engine time */
};

/* VFPGA_IOC_LIST_KERNELS: copy kernel descriptors into a user array. */
struct vfpga_ioc_list {
	__u64 descs;		/* in: user address of struct vfpga_kernel_desc[capacity] */
	__u32 start;		/* in: index of the first kernel wanted */
	__u32 capacity;		/* in: records the array holds */
	__u32 count;		/* out: records written */
	__u32 total;		/* out: kernels in the catalogue */
	__u16 status;		/* out: VFPGA_S_* */
	__u16 reserved[3];	/* 0 */
};

/* VFPGA_IOC_OPEN_SESSION, VFPGA_IOC_CLOSE_SESSION, VFPGA_IOC_LOAD_BITSTREAM. */
struct vfpga_ioc_session {
	char name[32];		/* in: kernel (open) or bitstream (load) name, NUL-terminated */
	__u64 session;		/* out (open) / in (close) */
	__u16 status;		/* out: VFPGA_S_* */
	__u16 reserved[3];	/* 0 */
};

/* VFPGA_IOC_INFO. */
struct vfpga_ioc_info {
	struct vfpga_info info;	/* out: as the device sent it */
	__u16 status;		/* out: VFPGA_S_* */
	__u16 reserved[3];	/* 0 */
};

/* VFPGA_IOC_STATS: device-wide (session 0) or one session's statistics. */
struct vfpga_ioc_stats {
	__u64 session;		/* in: 0 or a session of this file */
	struct vfpga_stats stats;	/* out: as the device sent it */
	__u16 status;		/* out: VFPGA_S_* */
	__u16 reserved[3];	/* 0 */
};

/* VFPGA_IOC_NOP: one round trip through a request queue, for measurements. */
struct vfpga_ioc_nop {
	__u64 duration_ns;	/* out: round trip seen by the driver */
	__u16 status;		/* out: VFPGA_S_* */
	__u16 reserved[3];	/* 0 */
};

/* VFPGA_IOC_LIMITS: this guest's policy and quotas, and its use now. */
struct vfpga_ioc_limits {
	struct vfpga_limits limits;	/* out: as the device sent it */
	__u16 status;		/* out: VFPGA_S_* (VFPGA_S_UNSUPPORTED: an older device) */
	__u16 reserved[3];	/* 0 */
};

/* vfpga_ioc_register.flags: the device only reads the buffer (it may be read-only memory). */
#define VFPGA_REG_READ_ONLY	_BITUL(0)

/*
 * VFPGA_IOC_REGISTER: pins a user buffer once, for runs to name by id
 * (VFPGA_IOC_ARG_REGISTERED) without pinning it again. The buffer belongs to
 * the open file: VFPGA_IOC_UNREGISTER or closing the file ends it (its pages
 * stay pinned until the last run using it is over). Its pages count against
 * the user's RLIMIT_MEMLOCK while registered (ENOMEM over it); at most the
 * module's max_registered buffers per file (ENOSPC), each of 1 byte to 1 GiB
 * (EINVAL), of anonymous, shmem or hugetlbfs memory (EOPNOTSUPP otherwise).
 */
struct vfpga_ioc_register {
	__u64 addr;		/* in: user address */
	__u64 len;		/* in: bytes */
	__u32 flags;		/* in: 0 or VFPGA_REG_READ_ONLY */
	__u32 id;		/* out: the buffer's id in this open file, never 0 */
	__u32 segments;		/* out: physically contiguous stretches (descriptors) */
	__u32 reserved;		/* 0 */
};

#define VFPGA_IOC_INFO		_IOR(VFPGA_IOC_MAGIC, 0, struct vfpga_ioc_info)
#define VFPGA_IOC_LIST_KERNELS	_IOWR(VFPGA_IOC_MAGIC, 1, struct vfpga_ioc_list)
#define VFPGA_IOC_OPEN_SESSION	_IOWR(VFPGA_IOC_MAGIC, 2, struct vfpga_ioc_session)
#define VFPGA_IOC_CLOSE_SESSION	_IOWR(VFPGA_IOC_MAGIC, 3, struct vfpga_ioc_session)
#define VFPGA_IOC_RUN		_IOWR(VFPGA_IOC_MAGIC, 4, struct vfpga_ioc_run)
#define VFPGA_IOC_LOAD_BITSTREAM _IOWR(VFPGA_IOC_MAGIC, 5, struct vfpga_ioc_session)
#define VFPGA_IOC_STATS		_IOWR(VFPGA_IOC_MAGIC, 6, struct vfpga_ioc_stats)
#define VFPGA_IOC_NOP		_IOWR(VFPGA_IOC_MAGIC, 7, struct vfpga_ioc_nop)
#define VFPGA_IOC_LIMITS	_IOR(VFPGA_IOC_MAGIC, 8, struct vfpga_ioc_limits)
#define VFPGA_IOC_REGISTER	_IOWR(VFPGA_IOC_MAGIC, 9, struct vfpga_ioc_register)
/* The argument is the id (ENOENT if this file has no such buffer). */
#define VFPGA_IOC_UNREGISTER	_IOW(VFPGA_IOC_MAGIC, 10, __u32)

#endif /* _UAPI_VFPGA_IOCTL_H */
