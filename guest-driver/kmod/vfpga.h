/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * virtio_vfpga internals, shared by
 *   vfpga_main.c  module, probe/remove, virtqueues, completion
 *   vfpga_req.c   requests: building, pinning, submitting, waiting, freeing
 *   vfpga_cdev.c  /dev/vfpgaN: file operations, ioctls, sessions
 *   vfpga_reg.c   registered buffers: pinned once, named by id in runs
 *
 * Lifetimes (see vfpga_req.c for the request's):
 * - struct vfpga_dev is reference counted (ref). probe() holds one until the
 *   end of remove(); the embedded class device holds one until its release;
 *   every open file and every request holds one. remove() only marks the
 *   device dead: whatever still holds a reference sees "dead" and gets
 *   -ENODEV, never a freed virtqueue.
 * - Submitters and the virtqueue callback touch a virtqueue only under its
 *   queue's lock and only while the device is neither dead nor frozen.
 *   remove() sets dead (freeze() sets frozen) under every queue lock, resets
 *   the device, takes back the buffers the device still held (under the lock)
 *   and only then deletes the virtqueues. restore() makes new ones and clears
 *   frozen; submitters that found the device frozen wait for that.
 */
#ifndef _VFPGA_H
#define _VFPGA_H

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/device.h>
#include <linux/kref.h>
#include <linux/refcount.h>
#include <linux/scatterlist.h>
#include <linux/semaphore.h>
#include <linux/sizes.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "vfpga_abi.h"

#define VFPGA_MAX_DEVICES		64
#define VFPGA_MAX_REQUEST_QUEUES	64
/* Driver ceiling on one request, whatever the device allows: bounds the pinned pages. */
#define VFPGA_MAX_REQUEST_BYTES		SZ_1G
/*
 * Driver ceiling on the descriptors of one chain with indirect descriptors,
 * whatever the device's max_segments: virtio_ring puts such a chain in one
 * table it kmalloc()s with GFP_ATOMIC, VFPGA_INDIRECT_ENTRY_BYTES per entry at
 * most (a vring_desc; newer kernels add a vring_desc_extra), so 2 MiB at most,
 * and a split ring's next field is 16 bits. vfpga_init_vqs() also keeps the
 * table within KMALLOC_MAX_SIZE.
 */
#define VFPGA_MAX_INDIRECT_SEGS		65535U
#define VFPGA_INDIRECT_ENTRY_BYTES	32U

struct vfpga_queue {
	spinlock_t lock;		/* vq, space_seq; taken from the vq interrupt */
	struct virtqueue *vq;		/* valid while the device is not dead or frozen */
	unsigned int ring_size;		/* descriptors in the ring */
	unsigned int max_segs;		/* descriptors one chain may use on this queue */
	unsigned int space_seq;		/* bumped whenever the device returns buffers */
	unsigned int pollers;		/* submitters polling: callbacks off while any */
	wait_queue_head_t space_wq;	/* submitters waiting for ring space */
	/*
	 * One per ring entry: a request takes one before it pins its pages and
	 * gives it back when the device returns it, so with indirect descriptors
	 * (one entry per chain) no request holds pinned pages while it waits
	 * for ring space.
	 */
	struct semaphore slots;
	char name[24];
};

/*
 * Requests can finish after vfpga_remove() dropped the last reference to vd->dev,
 * whose name goes with it: log them by minor number, not through the device.
 */
#define vfpga_warn(vd, fmt, ...) \
	pr_warn_ratelimited(KBUILD_MODNAME ": vfpga%u: " fmt, (vd)->minor, ##__VA_ARGS__)

struct vfpga_dev {
	struct kref ref;
	struct device dev;		/* /dev/vfpgaN; its release drops one ref */
	u32 minor;
	bool dead;			/* set once, under every queue lock, by remove() */
	bool frozen;			/* from freeze() to restore(), under every queue lock */
	bool can_load;			/* VIRTIO_VFPGA_F_LOAD_BITSTREAM negotiated */
	bool indirect;			/* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	u32 max_args;			/* min(config, VFPGA_MAX_ARGS) */
	u32 max_segments;		/* config max_segments */
	u64 max_request_bytes;		/* min(config, VFPGA_MAX_REQUEST_BYTES) */
	unsigned int max_seg_size;	/* longest scatterlist entry (DMA limit) */
	atomic64_t next_tag;
	atomic_t next_queue;
	unsigned int nr_queues;		/* control queue + request queues */
	struct vfpga_queue queues[];
};

/* A user buffer pinned once by VFPGA_IOC_REGISTER (vfpga_reg.c). */
struct vfpga_reg {
	struct kref ref;		/* the file's table, and each request using it */
	const struct cred *cred;	/* its user's RLIMIT_MEMLOCK counts the pages */
	struct sg_table sgt;		/* the whole buffer, contiguous pages merged */
	struct page **pages;
	unsigned long npages;
	unsigned long npinned;
	unsigned long uaddr;
	u64 len;
	bool writable;			/* pinned for writing: may be an output */
	struct mm_struct *mm;		/* shows the pages as pinned (VmPin) */
};

/*
 * One buffer argument: user memory (pinned for the request, or registered),
 * or a field of the request.
 */
struct vfpga_buf {
	struct sg_table sgt;		/* user memory once pinned; a registered range's cut */
	struct scatterlist ksg;		/* kernel memory */
	struct scatterlist *sgl;	/* what the chain carries: ksg, sgt or the registration's */
	unsigned int nents;		/* entries in sgl */
	void *kaddr;			/* kernel buffer, or NULL for user memory */
	struct vfpga_reg *reg;		/* registered buffer (holds a reference), or NULL */
	u64 reg_off;			/* offset of the bytes inside reg */
	unsigned long uaddr;
	u64 len;
	unsigned int first;		/* index of its first page in vfpga_req.pages */
	unsigned int npages;
	unsigned long npinned;
	bool write;			/* VFPGA_ARG_OUT: the device writes it */
};

/*
 * One request chain. References: the submitter holds one from
 * vfpga_req_new() to vfpga_req_put(); the device holds one from a successful
 * virtqueue_add_sgs() until vfpga_req_complete(). Whoever drops the last one
 * frees it (pages unpinned): in process context directly, otherwise (or when
 * nobody waits any more) through vfpga_wq.
 */
struct vfpga_req {
	refcount_t ref;
	bool abandoned;			/* nobody waits: freed through vfpga_wq */
	bool local;			/* answered by the driver, not sent */
	bool slot;			/* holds one of q->slots */
	u16 opcode;
	int error;			/* 0, -ENODEV (removed), -EAGAIN (suspended) */
	unsigned int used_len;		/* set on completion */
	u64 tag;
	u64 rd_bytes;			/* input buffer bytes */
	u64 wr_bytes;			/* output buffer bytes (response excluded) */
	struct vfpga_dev *vd;		/* holds a reference */
	struct vfpga_queue *q;
	struct completion done;
	struct work_struct free_work;

	unsigned int n_args;
	unsigned int n_rd;		/* device-readable scatterlists in sgs */
	unsigned int n_wr;		/* device-writable scatterlists in sgs */
	unsigned int segs;		/* descriptors in the chain */
	struct scatterlist *sgs[VFPGA_MAX_ARGS + 2];
	struct scatterlist head_sg;
	struct scatterlist resp_sg;
	struct page **pages;
	/* The submitter's, while its pinned pages count against RLIMIT_MEMLOCK. */
	struct mm_struct *locked_mm;
	unsigned long locked_pages;
	struct vfpga_buf bufs[VFPGA_MAX_ARGS];

	/* Device-readable: header and argument table back to back, then names. */
	struct vfpga_req_hdr hdr;
	struct vfpga_arg args[VFPGA_MAX_ARGS];
	char name[VFPGA_MAX_NAME_LEN + 1];

	/* Device-writable, off the cache lines the CPU writes while in flight. */
	union {
		struct vfpga_info info;
		struct vfpga_stats stats;
		struct vfpga_limits limits;
	} kout ____cacheline_aligned;
	struct vfpga_resp resp;
};

extern struct workqueue_struct *vfpga_wq;
extern const struct file_operations vfpga_fops;

static inline void vfpga_get(struct vfpga_dev *vd)
{
	kref_get(&vd->ref);
}

void vfpga_put(struct vfpga_dev *vd);
struct vfpga_dev *vfpga_get_by_minor(unsigned int minor);

static inline struct vfpga_queue *vfpga_control_queue(struct vfpga_dev *vd)
{
	return &vd->queues[VFPGA_CONTROL_QUEUE];
}

/* Request queues take turns. */
static inline struct vfpga_queue *vfpga_request_queue(struct vfpga_dev *vd)
{
	unsigned int turn = atomic_inc_return(&vd->next_queue);

	return &vd->queues[1 + turn % (vd->nr_queues - 1)];
}

int vfpga_req_cache_init(void);
void vfpga_req_cache_exit(void);
struct vfpga_req *vfpga_req_new(struct vfpga_dev *vd, struct vfpga_queue *q,
				u16 opcode, u64 session);
void vfpga_req_scalar(struct vfpga_req *req, u8 ty, u64 bits);
void vfpga_req_kbuf(struct vfpga_req *req, u8 kind, void *buf, u32 len);
int vfpga_req_ubuf(struct vfpga_req *req, u8 kind, u8 ty, u64 addr, u64 len);
int vfpga_pin_user(unsigned long uaddr, u64 len, unsigned int gup_flags, struct page **pages,
		   unsigned long *npinned, struct sg_table *sgt, unsigned int max_seg_size);
int vfpga_req_rbuf(struct vfpga_req *req, u8 kind, u8 ty, struct vfpga_reg *reg,
		   u64 off, u64 len);
int vfpga_req_exec(struct vfpga_req *req);
void vfpga_req_put(struct vfpga_req *req);
void vfpga_req_complete(struct vfpga_req *req, int error, unsigned int len);
int vfpga_send_close(struct vfpga_dev *vd, u64 session, bool may_wait);
void vfpga_queue_poll_begin(struct vfpga_dev *vd, struct vfpga_queue *q);
bool vfpga_queue_poll(struct vfpga_dev *vd, struct vfpga_queue *q);
void vfpga_queue_poll_end(struct vfpga_dev *vd, struct vfpga_queue *q);

struct vfpga_reg *vfpga_reg_new(unsigned long uaddr, u64 len, bool read_only,
				unsigned int max_seg_size);
void vfpga_reg_put(struct vfpga_reg *reg);
int vfpga_reg_slice(struct vfpga_reg *reg, u64 off, u64 len, struct sg_table *sgt,
		    struct scatterlist **sgl, unsigned int *nents);

#endif /* _VFPGA_H */
