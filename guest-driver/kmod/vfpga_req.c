// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfpga requests: one descriptor chain each,
 *   device-readable: vfpga_req_hdr | vfpga_arg x n_args | input buffers
 *   device-writable: output buffers | vfpga_resp
 * User buffers are pinned and handed to the device in place (no copy); the
 * header, argument table, names and response live in the request itself.
 *
 * Who frees a request:
 * - not submitted (bad argument, too large, no memory for its indirect
 *   table, no space and killed, device dead): its submitter, in
 *   vfpga_req_put().
 * - submitted: the device's reference is dropped by vfpga_req_complete(),
 *   called from the virtqueue callback or, for buffers the device never
 *   returned, from remove() or freeze() after the device reset. The submitter's
 *   reference is dropped once it has read the response. The last of the two
 *   frees: directly if it is the submitter, through vfpga_wq otherwise
 *   (unpinning may sleep; the callback runs in interrupt context).
 *
 * Pinned pages count against the submitter's RLIMIT_MEMLOCK (as vfio and
 * io_uring count theirs) from pinning until the request is freed; a request
 * over the limit fails with -ENOMEM before anything is pinned.
 * - submitter killed while waiting: it marks the request abandoned and drops
 *   its reference; the pages stay pinned and the request stays allocated
 *   until the device returns the chain or remove() detaches it; then it is
 *   freed through vfpga_wq. An abandoned OPEN_SESSION that succeeded is
 *   followed by a CLOSE_SESSION, so the device does not keep a session
 *   nobody knows.
 */
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/overflow.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/virtio.h>

#include "vfpga.h"

static struct kmem_cache *vfpga_req_cache;

/*
 * Hybrid polling: a small request's submitter watches its queue for the
 * answer this long before sleeping until the interrupt, saving the wake-up
 * when the device answers quickly (as NVMe and io_uring poll). Off by default:
 * it spends the submitter's CPU while it watches.
 */
#define VFPGA_MAX_POLL_US	1000
#define VFPGA_POLL_MAX_BYTES	SZ_64K
static unsigned int vfpga_poll_us;
module_param_named(poll_us, vfpga_poll_us, uint, 0644);
MODULE_PARM_DESC(poll_us, "microseconds a request of at most 64 KiB polls for its answer before sleeping (default 0: off; at most 1000)");

int vfpga_req_cache_init(void)
{
	vfpga_req_cache = KMEM_CACHE(vfpga_req, 0);
	return vfpga_req_cache ? 0 : -ENOMEM;
}

void vfpga_req_cache_exit(void)
{
	kmem_cache_destroy(vfpga_req_cache);
}

/* Pin and unpin must pick the same buffers: the unregistered user ones with bytes. */
static bool vfpga_buf_is_user(const struct vfpga_buf *b)
{
	return !b->kaddr && !b->reg && b->len;
}

/* Gives the pinned pages back to the submitter's locked-memory count. */
static void vfpga_req_unaccount(struct vfpga_req *req)
{
	struct mm_struct *mm = req->locked_mm;

	if (!mm)
		return;
	/* An address space that is gone keeps no count. */
	if (mmget_not_zero(mm)) {
		account_locked_vm(mm, req->locked_pages, false);
		mmput_async(mm);
	}
	mmdrop(mm);
	req->locked_mm = NULL;
}

static void vfpga_req_free(struct vfpga_req *req)
{
	unsigned int i;

	for (i = 0; i < req->n_args; i++) {
		struct vfpga_buf *b = &req->bufs[i];

		if (b->reg) {
			/* A cut of the registration's list, if it needed one. */
			sg_free_table(&b->sgt);
			vfpga_reg_put(b->reg);
			continue;
		}
		if (!vfpga_buf_is_user(b))
			continue;
		sg_free_table(&b->sgt);
		if (b->npinned)
			unpin_user_pages_dirty_lock(req->pages + b->first,
						    b->npinned, b->write);
	}
	kvfree(req->pages);
	vfpga_req_unaccount(req);
	vfpga_put(req->vd);
	kmem_cache_free(vfpga_req_cache, req);
}

/* 0 if the device answered this request within the protocol. */
static int vfpga_req_check(struct vfpga_req *req)
{
	unsigned int resp_len = sizeof(req->resp);

	if (req->error)
		return req->error;
	if (req->used_len < resp_len || req->used_len - resp_len > req->wr_bytes) {
		vfpga_warn(req->vd, "request %llu: used length %u out of range\n",
			   req->tag, req->used_len);
		return -EIO;
	}
	if (le64_to_cpu(req->resp.tag) != req->tag) {
		vfpga_warn(req->vd, "request %llu: response carries tag %llu\n",
			   req->tag, le64_to_cpu(req->resp.tag));
		return -EIO;
	}
	if (le64_to_cpu(req->resp.written) > req->wr_bytes) {
		vfpga_warn(req->vd, "request %llu: %llu bytes written, %llu offered\n",
			   req->tag, le64_to_cpu(req->resp.written), req->wr_bytes);
		return -EIO;
	}
	return 0;
}

static void vfpga_req_free_work(struct work_struct *work)
{
	struct vfpga_req *req = container_of(work, struct vfpga_req, free_work);

	if (req->abandoned && req->opcode == VFPGA_OP_OPEN_SESSION &&
	    !vfpga_req_check(req) && le16_to_cpu(req->resp.status) == VFPGA_S_OK)
		vfpga_send_close(req->vd, le64_to_cpu(req->resp.value), true);
	vfpga_req_free(req);
}

struct vfpga_req *vfpga_req_new(struct vfpga_dev *vd, struct vfpga_queue *q,
				u16 opcode, u64 session)
{
	struct vfpga_req *req;

	req = kmem_cache_zalloc(vfpga_req_cache, GFP_KERNEL);
	if (!req)
		return NULL;
	refcount_set(&req->ref, 1);
	init_completion(&req->done);
	INIT_WORK(&req->free_work, vfpga_req_free_work);
	vfpga_get(vd);
	req->vd = vd;
	req->q = q;
	req->opcode = opcode;
	req->tag = atomic64_inc_return(&vd->next_tag);
	req->hdr.magic = cpu_to_le32(VFPGA_REQUEST_MAGIC);
	req->hdr.version = cpu_to_le16(VFPGA_ABI_VERSION);
	req->hdr.opcode = cpu_to_le16(opcode);
	req->hdr.tag = cpu_to_le64(req->tag);
	req->hdr.session = cpu_to_le64(session);
	return req;
}

static struct vfpga_buf *vfpga_req_add(struct vfpga_req *req, u8 kind, u8 ty, u64 value)
{
	struct vfpga_arg *a = &req->args[req->n_args];

	a->kind = kind;
	a->ty = ty;
	a->value = cpu_to_le64(value);
	return &req->bufs[req->n_args++];
}

/* The callers add at most VFPGA_MAX_ARGS arguments (vfpga_cdev.c checks RUN's). */
void vfpga_req_scalar(struct vfpga_req *req, u8 ty, u64 bits)
{
	vfpga_req_add(req, VFPGA_ARG_SCALAR, ty, bits);
}

/*
 * A buffer argument of len bytes, counted in the request's input or output
 * bytes; NULL if that count would overflow.
 */
static struct vfpga_buf *vfpga_req_buf(struct vfpga_req *req, u8 kind, u8 ty, u64 len)
{
	u64 *sum = kind == VFPGA_ARG_OUT ? &req->wr_bytes : &req->rd_bytes;
	struct vfpga_buf *b;

	if (check_add_overflow(*sum, len, sum))
		return NULL;
	b = vfpga_req_add(req, kind, ty, len);
	b->len = len;
	b->write = kind == VFPGA_ARG_OUT;
	return b;
}

/* A U8 buffer inside the request (a name, or room for info/stats): no overflow. */
void vfpga_req_kbuf(struct vfpga_req *req, u8 kind, void *buf, u32 len)
{
	vfpga_req_buf(req, kind, VFPGA_T_U8, len)->kaddr = buf;
}

/* A user buffer, pinned by vfpga_req_exec(). */
int vfpga_req_ubuf(struct vfpga_req *req, u8 kind, u8 ty, u64 addr, u64 len)
{
	struct vfpga_buf *b;
	u64 end;

	if ((unsigned long)addr != addr || check_add_overflow(addr, len, &end))
		return -EINVAL;
	b = vfpga_req_buf(req, kind, ty, len);
	if (!b)
		return -EINVAL;
	b->uaddr = addr;
	return 0;
}

/*
 * Bytes [off, off + len) of a registered buffer, which the caller checked are
 * inside it (and writable for an output). Takes over the caller's reference,
 * unless the request's byte count would overflow (earlier arguments may have
 * brought it near the top): -EINVAL, the reference still the caller's.
 */
int vfpga_req_rbuf(struct vfpga_req *req, u8 kind, u8 ty, struct vfpga_reg *reg,
		   u64 off, u64 len)
{
	struct vfpga_buf *b = vfpga_req_buf(req, kind, ty, len);

	if (!b)
		return -EINVAL;
	b->reg = reg;
	b->reg_off = off;
	return 0;
}

/*
 * Pins the pages of len bytes at uaddr into pages (*npinned counts them, also
 * on failure, for the caller to unpin) and lists them in sgt, physically
 * contiguous pages merged into one entry up to max_seg_size (the DMA limit).
 * For a request's buffers and for registrations alike.
 */
int vfpga_pin_user(unsigned long uaddr, u64 len, unsigned int gup_flags, struct page **pages,
		   unsigned long *npinned, struct sg_table *sgt, unsigned int max_seg_size)
{
	unsigned long start = uaddr & PAGE_MASK;
	unsigned long npages = DIV_ROUND_UP_ULL(offset_in_page(uaddr) + len, PAGE_SIZE);
	int ret;

	while (*npinned < npages) {
		ret = pin_user_pages_fast(start + (*npinned << PAGE_SHIFT), npages - *npinned,
					  gup_flags, pages + *npinned);
		if (ret <= 0)
			return ret ? ret : -EFAULT;
		*npinned += ret;
	}
	return sg_alloc_table_from_pages_segment(sgt, pages, npages, offset_in_page(uaddr), len,
						 max_seg_size, GFP_KERNEL);
}

static int vfpga_buf_pin(struct vfpga_req *req, struct vfpga_buf *b)
{
	int ret;

	ret = vfpga_pin_user(b->uaddr, b->len, b->write ? FOLL_WRITE : 0, req->pages + b->first,
			     &b->npinned, &b->sgt, req->vd->max_seg_size);
	if (ret)
		return ret;
	b->sgl = b->sgt.sgl;
	b->nents = b->sgt.orig_nents;
	return 0;
}

static int vfpga_req_pin(struct vfpga_req *req)
{
	unsigned int i, total = 0;
	int err;

	for (i = 0; i < req->n_args; i++) {
		struct vfpga_buf *b = &req->bufs[i];

		if (!vfpga_buf_is_user(b))
			continue;
		/* len <= VFPGA_MAX_REQUEST_BYTES here: no overflow. */
		b->first = total;
		b->npages = DIV_ROUND_UP_ULL(offset_in_page(b->uaddr) + b->len, PAGE_SIZE);
		total += b->npages;
	}
	if (!total)
		return 0;
	/* Counted before anything is pinned: over the limit, nothing is. */
	err = account_locked_vm(current->mm, total, true);
	if (err)
		return err;
	req->locked_mm = current->mm;
	mmgrab(req->locked_mm);
	req->locked_pages = total;
	req->pages = kvmalloc_array(total, sizeof(*req->pages), GFP_KERNEL);
	if (!req->pages)
		return -ENOMEM;
	for (i = 0; i < req->n_args; i++) {
		struct vfpga_buf *b = &req->bufs[i];

		if (!vfpga_buf_is_user(b))
			continue;
		err = vfpga_buf_pin(req, b);
		if (err)
			return err;
	}
	return 0;
}

/* Registered buffers: their scatterlists, pinned already. */
static int vfpga_req_slice(struct vfpga_req *req)
{
	unsigned int i;
	int err;

	for (i = 0; i < req->n_args; i++) {
		struct vfpga_buf *b = &req->bufs[i];

		if (!b->reg || !b->len)
			continue;
		err = vfpga_reg_slice(b->reg, b->reg_off, b->len, &b->sgt, &b->sgl, &b->nents);
		if (err)
			return err;
	}
	return 0;
}

static void vfpga_req_local(struct vfpga_req *req, u16 status)
{
	req->local = true;
	req->resp.status = cpu_to_le16(status);
}

/* Adds the scatterlists of the buffers the device reads (!write) or writes. */
static unsigned int vfpga_req_add_sgs(struct vfpga_req *req, unsigned int n, bool write,
				      unsigned int *segs)
{
	unsigned int i;

	for (i = 0; i < req->n_args; i++) {
		struct vfpga_buf *b = &req->bufs[i];

		if (req->args[i].kind == VFPGA_ARG_SCALAR || b->write != write || !b->len)
			continue;
		if (b->kaddr) {
			sg_init_one(&b->ksg, b->kaddr, b->len);
			b->sgl = &b->ksg;
			b->nents = 1;
		}
		req->sgs[n++] = b->sgl;
		*segs += b->nents;
	}
	return n;
}

/*
 * Checks the device's limits, pins the user buffers and builds the chain.
 * A request over a limit is answered here with VFPGA_S_TOO_LARGE.
 */
static int vfpga_req_prepare(struct vfpga_req *req)
{
	struct vfpga_dev *vd = req->vd;
	size_t head = sizeof(req->hdr) + req->n_args * sizeof(req->args[0]);
	unsigned int n, segs = 2;
	u64 total;
	int err;

	BUILD_BUG_ON(offsetof(struct vfpga_req, args) !=
		     offsetof(struct vfpga_req, hdr) + sizeof(struct vfpga_req_hdr));

	req->hdr.n_args = cpu_to_le32(req->n_args);
	if (check_add_overflow(req->rd_bytes, req->wr_bytes, &total) ||
	    check_add_overflow(total, (u64)(head + sizeof(req->resp)), &total))
		return -EINVAL;
	if (req->n_args > vd->max_args || total > vd->max_request_bytes) {
		vfpga_req_local(req, VFPGA_S_TOO_LARGE);
		return 0;
	}

	err = vfpga_req_pin(req);
	if (!err)
		err = vfpga_req_slice(req);
	if (err)
		return err;

	sg_init_one(&req->head_sg, &req->hdr, head);
	req->sgs[0] = &req->head_sg;
	n = vfpga_req_add_sgs(req, 1, false, &segs);
	req->n_rd = n;
	n = vfpga_req_add_sgs(req, n, true, &segs);
	sg_init_one(&req->resp_sg, &req->resp, sizeof(req->resp));
	req->sgs[n++] = &req->resp_sg;
	req->n_wr = n - req->n_rd;
	req->segs = segs;

	/* The ring size, or with indirect descriptors max_segments (vfpga_init_vqs()). */
	if (segs > req->q->max_segs)
		vfpga_req_local(req, VFPGA_S_TOO_LARGE);
	return 0;
}

/*
 * Puts the chain on its queue. With may_wait, waits (killably) for ring space
 * when the queue is full or the device is suspended; otherwise returns
 * -ENOSPC. A chain longer than the ring whose indirect table cannot be
 * allocated fails with -ENOMEM at once.
 */
static int vfpga_req_submit(struct vfpga_req *req, bool may_wait)
{
	struct vfpga_dev *vd = req->vd;
	struct vfpga_queue *q = req->q;
	bool table_only = false;
	unsigned int seq;
	int err;

	for (;;) {
		spin_lock_irq(&q->lock);
		if (vd->dead) {
			err = -ENODEV;
		} else if (vd->frozen) {
			/* Suspended: wait like for ring space; restore() wakes us. */
			err = -ENOSPC;
		} else {
			/*
			 * virtio_ring tries an indirect table whenever the ring
			 * has a free entry, and falls back to the ring itself
			 * when the table cannot be allocated (atomically: we hold
			 * the lock the interrupt takes). A chain longer than the
			 * ring only fits as a table, so -ENOSPC with a free entry
			 * means no memory for it: more ring space would not help.
			 */
			table_only = req->segs > q->ring_size && q->vq->num_free;
			err = virtqueue_add_sgs(q->vq, req->sgs, req->n_rd, req->n_wr, req,
						GFP_ATOMIC | __GFP_NOWARN);
			if (!err) {
				/* The device's reference, dropped by vfpga_req_complete(). */
				refcount_inc(&req->ref);
				/* Under the lock: remove() deletes the vq once dead is set. */
				virtqueue_kick(q->vq);
			}
		}
		seq = q->space_seq;
		spin_unlock_irq(&q->lock);

		if (err == -ENOSPC && table_only) {
			vfpga_warn(vd, "request %llu: no memory for an indirect table of %u descriptors\n",
				   req->tag, req->segs);
			return -ENOMEM;
		}
		if (err != -ENOSPC || !may_wait)
			return err;
		if (wait_event_killable(q->space_wq,
					READ_ONCE(q->space_seq) != seq || READ_ONCE(vd->dead)))
			return -EINTR;
	}
}

/*
 * Runs a request: prepare, submit, wait. Returns 0 when req->resp holds the
 * answer (the device's, or the driver's VFPGA_S_TOO_LARGE), or a negative
 * errno. The caller drops its reference with vfpga_req_put() in every case.
 */
static void vfpga_req_give_slot(struct vfpga_req *req)
{
	if (req->slot) {
		req->slot = false;
		up(&req->q->slots);
	}
}

/* Watches the queue for req's answer for up to poll_us, unless something else needs the CPU. */
static void vfpga_req_poll(struct vfpga_req *req)
{
	unsigned int us = min(READ_ONCE(vfpga_poll_us), VFPGA_MAX_POLL_US);
	u64 end;

	if (!us || req->rd_bytes + req->wr_bytes > VFPGA_POLL_MAX_BYTES)
		return;
	end = ktime_get_ns() + (u64)us * NSEC_PER_USEC;
	vfpga_queue_poll_begin(req->vd, req->q);
	while (!completion_done(&req->done)) {
		if (need_resched() || fatal_signal_pending(current) || ktime_get_ns() > end ||
		    !vfpga_queue_poll(req->vd, req->q))
			break;
		cpu_relax();
	}
	vfpga_queue_poll_end(req->vd, req->q);
}

int vfpga_req_exec(struct vfpga_req *req)
{
	int err;

	/* Ring space first, then pages (see struct vfpga_queue). */
	if (down_killable(&req->q->slots))
		return -EINTR;
	req->slot = true;
	err = vfpga_req_prepare(req);
	if (err || req->local) {
		vfpga_req_give_slot(req);
		return err;
	}
	err = vfpga_req_submit(req, true);
	if (err) {
		vfpga_req_give_slot(req);
		return err;
	}
	vfpga_req_poll(req);
	if (wait_for_completion_killable(&req->done)) {
		/* The device still owns the chain: its completion frees it. */
		req->abandoned = true;
		return -EINTR;
	}
	return vfpga_req_check(req);
}

void vfpga_req_put(struct vfpga_req *req)
{
	if (!refcount_dec_and_test(&req->ref))
		return;
	if (req->abandoned)
		queue_work(vfpga_wq, &req->free_work);
	else
		vfpga_req_free(req);
}

/*
 * The device returned the chain (error 0, len = used length) or remove()
 * took it back (-ENODEV). Called with the queue lock held, maybe in
 * interrupt context.
 */
void vfpga_req_complete(struct vfpga_req *req, int error, unsigned int len)
{
	vfpga_req_give_slot(req);
	req->error = error;
	req->used_len = len;
	complete(&req->done);
	if (refcount_dec_and_test(&req->ref))
		queue_work(vfpga_wq, &req->free_work);
}

/* Sends CLOSE_SESSION without waiting for the answer. */
int vfpga_send_close(struct vfpga_dev *vd, u64 session, bool may_wait)
{
	struct vfpga_req *req;
	int err;

	req = vfpga_req_new(vd, vfpga_control_queue(vd), VFPGA_OP_CLOSE_SESSION, session);
	if (!req)
		return -ENOMEM;
	err = vfpga_req_prepare(req);
	if (!err && !req->local) {
		err = vfpga_req_submit(req, may_wait);
		if (!err)
			req->abandoned = true;
	}
	vfpga_req_put(req);
	return err;
}
