/* SPDX-License-Identifier: MIT */
/*
 * vfpga device ABI: the structures a driver and a device exchange over the
 * vfpga virtio device. Little-endian, fixed-size, no pointers.
 * Specification: docs/protocol.md. The Rust twin (crate vfpga-proto) is held
 * equal to this file by proto/tests/c_layout.rs.
 *
 * A request is one descriptor chain:
 *   device-readable: vfpga_req_hdr | vfpga_arg x n_args | input buffers
 *   device-writable: output buffers | vfpga_resp
 */
#ifndef _VFPGA_ABI_H
#define _VFPGA_ABI_H

#include <linux/const.h>
#include <linux/types.h>

#define VFPGA_ABI_VERSION		1
#define VFPGA_REQUEST_MAGIC		0x51524656	/* "VFRQ" */
#define VFPGA_CONFIG_MAGIC		0x47504656	/* "VFPG" */
#define VFPGA_DEFAULT_VIRTIO_ID		21
#define VFPGA_CONTROL_QUEUE		0
#define VFPGA_MAX_ARGS			8
#define VFPGA_DIM_NONE			0xff
#define VFPGA_MAX_NAME_LEN		31

/* Device feature bits (virtio device-specific range). */
#define VIRTIO_VFPGA_F_LOAD_BITSTREAM	0

/* Capability bits in vfpga_config.capabilities and vfpga_info.capabilities. */
#define VFPGA_CAP_OUT_OF_ORDER		_BITULL(0)
#define VFPGA_CAP_LIMITS		_BITULL(1)	/* GET_LIMITS answers */
#define VFPGA_CAP_ENGINE_SIM		_BITULL(8)
#define VFPGA_CAP_ENGINE_PL		_BITULL(9)
#define VFPGA_CAP_ENGINE_REMOTE		_BITULL(10)

/* Opcodes (vfpga_req_hdr.opcode). */
#define VFPGA_OP_GET_INFO		1
#define VFPGA_OP_LIST_KERNELS		2
#define VFPGA_OP_OPEN_SESSION		3
#define VFPGA_OP_CLOSE_SESSION		4
#define VFPGA_OP_RUN			5
#define VFPGA_OP_LOAD_BITSTREAM		6
#define VFPGA_OP_GET_STATS		7
#define VFPGA_OP_NOP			8
#define VFPGA_OP_UPLOAD_BITSTREAM	9	/* board agents only */
#define VFPGA_OP_GET_LIMITS		10

/* Status codes (vfpga_resp.status). */
#define VFPGA_S_OK			0
#define VFPGA_S_BAD_REQUEST		1
#define VFPGA_S_BAD_VERSION		2
#define VFPGA_S_UNSUPPORTED		3
#define VFPGA_S_UNKNOWN_KERNEL		4
#define VFPGA_S_BAD_SESSION		5
#define VFPGA_S_BAD_ARGUMENT		6
#define VFPGA_S_PERMISSION		7
#define VFPGA_S_BUSY			8
#define VFPGA_S_TOO_LARGE		9
#define VFPGA_S_ENGINE_ERROR		10
#define VFPGA_S_TIMEOUT			11
#define VFPGA_S_LINK_DOWN		12

/* Argument kinds (vfpga_arg.kind, vfpga_arg_desc.kind). */
#define VFPGA_ARG_SCALAR		1
#define VFPGA_ARG_IN			2
#define VFPGA_ARG_OUT			3

/* Element types (vfpga_arg.ty, vfpga_arg_desc.ty). */
#define VFPGA_T_U8			1
#define VFPGA_T_I16			2
#define VFPGA_T_I32			3
#define VFPGA_T_U32			4
#define VFPGA_T_F32			5
#define VFPGA_T_U64			6
#define VFPGA_T_I64			7
#define VFPGA_T_F64			8

/* Device-specific configuration space. */
struct vfpga_config {
	__le32 magic;
	__le16 abi_version;
	__le16 num_request_queues;
	__le32 max_segments;
	__le32 max_args;
	__le64 max_request_bytes;
	__le64 capabilities;
	__le32 max_sessions;
	__le32 reserved;
};

/* First bytes of every request (device-readable). */
struct vfpga_req_hdr {
	__le32 magic;
	__le16 version;
	__le16 opcode;
	__le32 flags;
	__le32 n_args;
	__le64 tag;
	__le64 session;
	__le64 reserved[2];
};

/* Argument table entry: a scalar's bits or a buffer's byte length. */
struct vfpga_arg {
	__u8 kind;
	__u8 ty;
	__le16 flags;
	__le32 reserved;
	__le64 value;
};

/* Last bytes of every request (device-writable). */
struct vfpga_resp {
	__le16 status;
	__le16 reserved;
	__le32 detail;
	__le64 tag;
	__le64 value;
	__le64 written;
	__le64 duration_ns;
};

/* VFPGA_OP_GET_INFO answer. Strings are NUL-padded. */
struct vfpga_info {
	__le16 abi_version;
	__le16 num_request_queues;
	__le32 num_kernels;
	__le64 capabilities;
	__le64 features;
	__le32 max_sessions;
	__le32 open_sessions;
	char engine[32];
	char daemon_version[32];
	char device_name[32];
	char bitstream[32];
};

/*
 * One argument of a kernel signature. A buffer holds
 * count * value(dims[0]) * value(dims[1]) elements of type ty, where
 * dims name scalar arguments by index (VFPGA_DIM_NONE: unused).
 */
struct vfpga_arg_desc {
	char name[10];
	__u8 kind;
	__u8 ty;
	__u8 dims[2];
	__le16 count;
};

/* VFPGA_OP_LIST_KERNELS answer record. */
struct vfpga_kernel_desc {
	char name[32];
	char doc[64];
	__u8 n_args;
	__u8 flags;
	__le16 reserved0;
	__le32 reserved1;
	struct vfpga_arg_desc args[VFPGA_MAX_ARGS];
};

/* VFPGA_OP_GET_STATS answer. */
struct vfpga_stats {
	__le64 requests;
	__le64 errors;
	__le64 runs;
	__le64 bytes_in;
	__le64 bytes_out;
	__le64 engine_ns;
	__le64 busy;
	__le32 open_sessions;
	__le32 reserved;
};

/* vfpga_limits.flags */
#define VFPGA_LIMIT_F_LOAD		_BITUL(0)	/* may load bitstreams */
#define VFPGA_LIMIT_F_ALL_KERNELS	_BITUL(1)	/* may run every kernel */

/* VFPGA_OP_GET_LIMITS answer: this guest's policy (rates: 0 = none) and its use now. */
struct vfpga_limits {
	__le32 max_sessions;
	__le32 max_inflight;
	__le64 max_inflight_bytes;
	__le64 max_request_bytes;
	__le64 rate_runs;
	__le64 rate_bytes;
	__le32 weight;
	__le32 flags;
	__le32 inflight;
	__le32 reserved;
	__le64 inflight_bytes;
};

#endif /* _VFPGA_ABI_H */
