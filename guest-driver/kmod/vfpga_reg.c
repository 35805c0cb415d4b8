// SPDX-License-Identifier: GPL-2.0-only
/*
 * Registered buffers: user memory pinned once (VFPGA_IOC_REGISTER) and named
 * by id and offset in later runs (VFPGA_IOC_ARG_REGISTERED), as io_uring's
 * fixed buffers are. A run on a registered buffer pins nothing: it hands the
 * device the scatterlist built at registration, whole or cut to the range.
 *
 * Lifetimes: a registration is reference counted. The open file's table holds
 * one until VFPGA_IOC_UNREGISTER or release; every request using it holds one
 * until the request is freed, so the pages stay pinned while the device may
 * still touch them. The last reference unpins (may sleep: callers are in
 * process context or vfpga_wq).
 *
 * The pages count against the registering user's RLIMIT_MEMLOCK (in its
 * user_struct, as io_uring counts its registered buffers) from registration
 * to the last reference: a registration can outlive the process that made it
 * (the file may be inherited or passed on), so a count in the process's mm
 * would end with it while the pages stay pinned. The process's mm shows them
 * as pinned (VmPin) meanwhile.
 */
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/hugetlb.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/shmem_fs.h>
#include <linux/slab.h>

/* Adds (or with a negative count, takes back) pages to user's locked memory. */
static int vfpga_reg_account(struct user_struct *user, long pages)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
	long cur = atomic_long_read(&user->locked_vm), next;

	if (pages < 0) {
		atomic_long_add(pages, &user->locked_vm);
		return 0;
	}
	do {
		next = cur + pages;
		if (next > limit && !capable(CAP_IPC_LOCK))
			return -ENOMEM;
	} while (!atomic_long_try_cmpxchg(&user->locked_vm, &cur, next));
	return 0;
}

/*
 * Only anonymous, shmem and hugetlbfs memory may be pinned for long: the
 * pages of other files move under writeback and truncation (Linux refuses
 * such long-term pins itself only from 6.5). -EFAULT for a hole.
 */
static int vfpga_reg_check_vmas(unsigned long start, unsigned long end)
{
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *vma;
	int err = 0;

	mmap_read_lock(mm);
	for (; start < end; start = vma->vm_end) {
		vma = vma_lookup(mm, start);
		if (!vma) {
			err = -EFAULT;
			break;
		}
		if (vma->vm_file && !is_vm_hugetlb_page(vma) && !shmem_file(vma->vm_file)) {
			err = -EOPNOTSUPP;
			break;
		}
	}
	mmap_read_unlock(mm);
	return err;
}

#include "vfpga.h"

static void vfpga_reg_release(struct kref *ref)
{
	struct vfpga_reg *reg = container_of(ref, struct vfpga_reg, ref);
	struct mm_struct *mm = reg->mm;

	sg_free_table(&reg->sgt);
	if (reg->npinned)
		unpin_user_pages_dirty_lock(reg->pages, reg->npinned, reg->writable);
	kvfree(reg->pages);
	if (mm) {
		atomic64_sub(reg->npages, &mm->pinned_vm);
		mmdrop(mm);
	}
	if (reg->cred) {
		vfpga_reg_account(reg->cred->user, -(long)reg->npages);
		put_cred(reg->cred);
	}
	kfree(reg);
}

void vfpga_reg_put(struct vfpga_reg *reg)
{
	kref_put(&reg->ref, vfpga_reg_release);
}

/*
 * Pins len bytes at uaddr for the current process. Returns the registration
 * (one reference) or an ERR_PTR: -EINVAL for an empty or overflowing range,
 * -ENOMEM over RLIMIT_MEMLOCK (nothing pinned), -EFAULT for memory that cannot
 * be pinned (for writing, unless read_only), -EOPNOTSUPP for a file mapping
 * other than shmem or hugetlbfs.
 */
struct vfpga_reg *vfpga_reg_new(unsigned long uaddr, u64 len, bool read_only,
				unsigned int max_seg_size)
{
	/*
	 * Read-only buffers are pinned for writing where they may be written:
	 * before Linux 6.2 a read-only long-term pin of memory never written
	 * pins the shared zero page, and the device would go on reading zeros
	 * after the program fills the buffer.
	 */
	unsigned long start = uaddr & PAGE_MASK;
	struct vfpga_reg *reg;
	u64 end;
	int ret;

	if (!len || len > VFPGA_MAX_REQUEST_BYTES || check_add_overflow((u64)uaddr, len, &end) ||
	    end > TASK_SIZE)
		return ERR_PTR(-EINVAL);
	ret = vfpga_reg_check_vmas(start, end);
	if (ret)
		return ERR_PTR(ret);
	reg = kzalloc(sizeof(*reg), GFP_KERNEL);
	if (!reg)
		return ERR_PTR(-ENOMEM);
	kref_init(&reg->ref);
	reg->uaddr = uaddr;
	reg->len = len;
	reg->writable = !read_only;
	reg->npages = DIV_ROUND_UP_ULL(offset_in_page(uaddr) + len, PAGE_SIZE);

	/* Counted before anything is pinned: over the limit, nothing is. */
	ret = vfpga_reg_account(current_user(), reg->npages);
	if (ret) {
		kfree(reg);
		return ERR_PTR(ret);
	}
	/* The user_struct stays with the credentials (free_uid() is not exported). */
	reg->cred = get_current_cred();
	reg->mm = current->mm;
	mmgrab(reg->mm);
	atomic64_add(reg->npages, &reg->mm->pinned_vm);

	reg->pages = kvmalloc_array(reg->npages, sizeof(*reg->pages), GFP_KERNEL);
	if (!reg->pages) {
		ret = -ENOMEM;
		goto err;
	}
	ret = vfpga_pin_user(uaddr, len, FOLL_LONGTERM | FOLL_WRITE, reg->pages, &reg->npinned,
			     &reg->sgt, max_seg_size);
	if (ret && read_only) {
		/* Memory the program cannot write: pin it as it is. */
		unpin_user_pages(reg->pages, reg->npinned);
		reg->npinned = 0;
		ret = vfpga_pin_user(uaddr, len, FOLL_LONGTERM, reg->pages, &reg->npinned,
				     &reg->sgt, max_seg_size);
	}
	if (ret)
		goto err;
	return reg;

err:
	vfpga_reg_put(reg);
	return ERR_PTR(ret);
}

/*
 * The scatterlist of bytes [off, off + len) of a registration, which the
 * caller has checked are inside it: the registration's own list when the range
 * is all of it (nothing allocated), else a new table in *sgt holding the
 * entries the range overlaps, the first and last cut to it. The registration's
 * list may be in several chains at once: virtqueue_add_sgs() only reads it. It
 * must never go to dma_map_sg(), which writes into the list.
 */
int vfpga_reg_slice(struct vfpga_reg *reg, u64 off, u64 len, struct sg_table *sgt,
		    struct scatterlist **sgl, unsigned int *nents)
{
	struct scatterlist *sg, *out;
	u64 pos = 0, end = off + len;
	unsigned int i, n = 0;
	int err;

	if (!off && len == reg->len) {
		*sgl = reg->sgt.sgl;
		*nents = reg->sgt.orig_nents;
		return 0;
	}
	for_each_sgtable_sg(&reg->sgt, sg, i) {
		if (pos < end && pos + sg->length > off)
			n++;
		pos += sg->length;
	}
	err = sg_alloc_table(sgt, n, GFP_KERNEL);
	if (err)
		return err;
	out = sgt->sgl;
	pos = 0;
	for_each_sgtable_sg(&reg->sgt, sg, i) {
		u64 from = max(pos, off), to = min(pos + sg->length, end);

		if (from < to) {
			/* Bytes into the entry's pages; they are physically contiguous. */
			u64 skip = sg->offset + (from - pos);

			sg_set_page(out, nth_page(sg_page(sg), skip >> PAGE_SHIFT),
				    to - from, offset_in_page(skip));
			out = sg_next(out);
		}
		pos += sg->length;
		if (pos >= end)
			break;
	}
	*sgl = sgt->sgl;
	*nents = n;
	return 0;
}
