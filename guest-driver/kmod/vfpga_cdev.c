// SPDX-License-Identifier: GPL-2.0-only
/*
 * /dev/vfpgaN: file operations, the ioctls of uapi/vfpga_ioctl.h, and the
 * sessions each open file owns.
 *
 * An ioctl returns 0 when it has an answer for its status field (from the
 * device, or from the driver: VFPGA_S_BAD_SESSION for a session this file did
 * not open, VFPGA_S_TOO_LARGE over a device limit, VFPGA_S_UNSUPPORTED for
 * LOAD_BITSTREAM when the device does not offer it), and a negative errno
 * otherwise. A session opened through a file is closed when the file is
 * released; so is every buffer registered through it.
 */
#include <linux/fs.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/math64.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>

#include "vfpga.h"
#include "vfpga_ioctl.h"

struct vfpga_session {
	struct list_head node;
	u64 id;
};

static unsigned int vfpga_max_runs = 32;
module_param_named(max_runs, vfpga_max_runs, uint, 0444);
MODULE_PARM_DESC(max_runs, "RUN requests one open file may have in flight; more wait (default 32)");

static unsigned int vfpga_max_registered = 64;
module_param_named(max_registered, vfpga_max_registered, uint, 0444);
MODULE_PARM_DESC(max_registered, "buffers one open file may have registered (default 64)");

struct vfpga_file {
	struct vfpga_dev *vd;		/* holds a reference */
	spinlock_t lock;		/* sessions */
	struct list_head sessions;
	struct xarray regs;		/* id -> struct vfpga_reg, holding a reference */
	struct mutex reg_lock;		/* one REGISTER or UNREGISTER at a time */
	struct semaphore runs;		/* RUN requests in flight, at most max_runs */
	struct work_struct release_work;
};

static struct vfpga_session *vfpga_session_find(struct vfpga_file *vf, u64 id)
{
	struct vfpga_session *s;

	lockdep_assert_held(&vf->lock);
	list_for_each_entry(s, &vf->sessions, node)
		if (s->id == id)
			return s;
	return NULL;
}

static bool vfpga_session_known(struct vfpga_file *vf, u64 id)
{
	bool found;

	spin_lock(&vf->lock);
	found = !!vfpga_session_find(vf, id);
	spin_unlock(&vf->lock);
	return found;
}

static void vfpga_session_forget(struct vfpga_file *vf, u64 id)
{
	struct vfpga_session *s;

	spin_lock(&vf->lock);
	s = vfpga_session_find(vf, id);
	if (s)
		list_del(&s->node);
	spin_unlock(&vf->lock);
	kfree(s);
}

/* Length of a NUL-terminated name of 1..VFPGA_MAX_NAME_LEN bytes, else 0. */
static size_t vfpga_name_len(const char *name, size_t size)
{
	size_t len = strnlen(name, size);

	return len < size ? len : 0;
}

/* A control request whose one argument is a name. */
static struct vfpga_req *vfpga_req_named(struct vfpga_dev *vd, u16 opcode,
					 const char *name, size_t len)
{
	struct vfpga_req *req;

	req = vfpga_req_new(vd, vfpga_control_queue(vd), opcode, 0);
	if (!req)
		return NULL;
	memcpy(req->name, name, len);
	vfpga_req_kbuf(req, VFPGA_ARG_IN, req->name, len);
	return req;
}

static int vfpga_ioc_info(struct vfpga_file *vf, void __user *uarg)
{
	struct vfpga_ioc_info io = {};
	struct vfpga_req *req;
	int err;

	req = vfpga_req_new(vf->vd, vfpga_control_queue(vf->vd), VFPGA_OP_GET_INFO, 0);
	if (!req)
		return -ENOMEM;
	vfpga_req_kbuf(req, VFPGA_ARG_OUT, &req->kout.info, sizeof(req->kout.info));
	err = vfpga_req_exec(req);
	if (err)
		goto out;
	io.status = le16_to_cpu(req->resp.status);
	if (io.status == VFPGA_S_OK)
		io.info = req->kout.info;
	if (copy_to_user(uarg, &io, sizeof(io)))
		err = -EFAULT;
out:
	vfpga_req_put(req);
	return err;
}

static int vfpga_ioc_limits(struct vfpga_file *vf, void __user *uarg)
{
	struct vfpga_ioc_limits io = {};
	struct vfpga_req *req;
	int err;

	req = vfpga_req_new(vf->vd, vfpga_control_queue(vf->vd), VFPGA_OP_GET_LIMITS, 0);
	if (!req)
		return -ENOMEM;
	vfpga_req_kbuf(req, VFPGA_ARG_OUT, &req->kout.limits, sizeof(req->kout.limits));
	err = vfpga_req_exec(req);
	if (err)
		goto out;
	io.status = le16_to_cpu(req->resp.status);
	if (io.status == VFPGA_S_OK)
		io.limits = req->kout.limits;
	if (copy_to_user(uarg, &io, sizeof(io)))
		err = -EFAULT;
out:
	vfpga_req_put(req);
	return err;
}

static int vfpga_ioc_list(struct vfpga_file *vf, void __user *uarg)
{
	const u32 rec = sizeof(struct vfpga_kernel_desc);
	struct vfpga_ioc_list io;
	struct vfpga_req *req;
	u64 written;
	int err;

	if (copy_from_user(&io, uarg, sizeof(io)))
		return -EFAULT;
	if (memchr_inv(io.reserved, 0, sizeof(io.reserved)))
		return -EINVAL;
	req = vfpga_req_new(vf->vd, vfpga_control_queue(vf->vd), VFPGA_OP_LIST_KERNELS, 0);
	if (!req)
		return -ENOMEM;
	vfpga_req_scalar(req, VFPGA_T_U32, io.start);
	err = vfpga_req_ubuf(req, VFPGA_ARG_OUT, VFPGA_T_U8, io.descs, (u64)io.capacity * rec);
	if (err)
		goto out;
	err = vfpga_req_exec(req);
	if (err)
		goto out;
	io.status = le16_to_cpu(req->resp.status);
	io.count = 0;
	io.total = 0;
	if (io.status == VFPGA_S_OK) {
		written = le64_to_cpu(req->resp.written);
		if (written % rec) {
			vfpga_warn(vf->vd, "LIST_KERNELS wrote %llu bytes\n",
				   written);
			err = -EIO;
			goto out;
		}
		io.count = div_u64(written, rec);
		io.total = min_t(u64, le64_to_cpu(req->resp.value), U32_MAX);
	}
	if (copy_to_user(uarg, &io, sizeof(io)))
		err = -EFAULT;
out:
	vfpga_req_put(req);
	return err;
}

static int vfpga_ioc_open_session(struct vfpga_file *vf, void __user *uarg)
{
	struct vfpga_ioc_session io;
	struct vfpga_session *s;
	struct vfpga_req *req;
	size_t len;
	int err;

	if (copy_from_user(&io, uarg, sizeof(io)))
		return -EFAULT;
	len = vfpga_name_len(io.name, sizeof(io.name));
	if (!len || memchr_inv(io.reserved, 0, sizeof(io.reserved)))
		return -EINVAL;
	/* Allocated first: once the device opened a session, it goes on the list. */
	s = kmalloc(sizeof(*s), GFP_KERNEL);
	if (!s)
		return -ENOMEM;
	req = vfpga_req_named(vf->vd, VFPGA_OP_OPEN_SESSION, io.name, len);
	if (!req) {
		err = -ENOMEM;
		goto out_free;
	}
	err = vfpga_req_exec(req);
	if (err)
		goto out_put;
	io.status = le16_to_cpu(req->resp.status);
	io.session = 0;
	if (io.status == VFPGA_S_OK) {
		s->id = le64_to_cpu(req->resp.value);
		if (!s->id) {
			vfpga_warn(vf->vd, "device opened session 0\n");
			err = -EIO;
			goto out_put;
		}
		spin_lock(&vf->lock);
		list_add(&s->node, &vf->sessions);
		spin_unlock(&vf->lock);
		io.session = s->id;
		s = NULL;
	}
	if (copy_to_user(uarg, &io, sizeof(io)))
		err = -EFAULT;
out_put:
	vfpga_req_put(req);
out_free:
	kfree(s);
	return err;
}

static int vfpga_ioc_close_session(struct vfpga_file *vf, void __user *uarg)
{
	struct vfpga_ioc_session io;
	struct vfpga_req *req;
	int err;

	if (copy_from_user(&io, uarg, sizeof(io)))
		return -EFAULT;
	if (memchr_inv(io.reserved, 0, sizeof(io.reserved)))
		return -EINVAL;
	if (!vfpga_session_known(vf, io.session)) {
		io.status = VFPGA_S_BAD_SESSION;
		goto reply;
	}
	req = vfpga_req_new(vf->vd, vfpga_control_queue(vf->vd), VFPGA_OP_CLOSE_SESSION,
			    io.session);
	if (!req)
		return -ENOMEM;
	err = vfpga_req_exec(req);
	if (!err)
		io.status = le16_to_cpu(req->resp.status);
	vfpga_req_put(req);
	if (err)
		return err;
	/* BAD_SESSION: the device no longer knows it either. */
	if (io.status == VFPGA_S_OK || io.status == VFPGA_S_BAD_SESSION)
		vfpga_session_forget(vf, io.session);
reply:
	if (copy_to_user(uarg, &io, sizeof(io)))
		return -EFAULT;
	return 0;
}

static int vfpga_ioc_load(struct vfpga_file *vf, void __user *uarg)
{
	struct vfpga_ioc_session io;
	struct vfpga_req *req;
	size_t len;
	int err;

	if (copy_from_user(&io, uarg, sizeof(io)))
		return -EFAULT;
	len = vfpga_name_len(io.name, sizeof(io.name));
	if (!len || memchr_inv(io.reserved, 0, sizeof(io.reserved)))
		return -EINVAL;
	io.session = 0;
	if (!vf->vd->can_load) {
		io.status = VFPGA_S_UNSUPPORTED;
		goto reply;
	}
	req = vfpga_req_named(vf->vd, VFPGA_OP_LOAD_BITSTREAM, io.name, len);
	if (!req)
		return -ENOMEM;
	err = vfpga_req_exec(req);
	if (!err)
		io.status = le16_to_cpu(req->resp.status);
	vfpga_req_put(req);
	if (err)
		return err;
reply:
	if (copy_to_user(uarg, &io, sizeof(io)))
		return -EFAULT;
	return 0;
}

static int vfpga_ioc_stats(struct vfpga_file *vf, void __user *uarg)
{
	struct vfpga_ioc_stats io;
	struct vfpga_req *req;
	int err;

	if (copy_from_user(&io, uarg, sizeof(io)))
		return -EFAULT;
	if (memchr_inv(io.reserved, 0, sizeof(io.reserved)))
		return -EINVAL;
	memset(&io.stats, 0, sizeof(io.stats));
	if (io.session && !vfpga_session_known(vf, io.session)) {
		io.status = VFPGA_S_BAD_SESSION;
		goto reply;
	}
	req = vfpga_req_new(vf->vd, vfpga_control_queue(vf->vd), VFPGA_OP_GET_STATS,
			    io.session);
	if (!req)
		return -ENOMEM;
	vfpga_req_kbuf(req, VFPGA_ARG_OUT, &req->kout.stats, sizeof(req->kout.stats));
	err = vfpga_req_exec(req);
	if (!err) {
		io.status = le16_to_cpu(req->resp.status);
		if (io.status == VFPGA_S_OK)
			io.stats = req->kout.stats;
	}
	vfpga_req_put(req);
	if (err)
		return err;
reply:
	if (copy_to_user(uarg, &io, sizeof(io)))
		return -EFAULT;
	return 0;
}

static int vfpga_ioc_register(struct vfpga_file *vf, void __user *uarg)
{
	struct vfpga_ioc_register io;
	struct vfpga_reg *reg;
	u32 id;
	int err;

	if (copy_from_user(&io, uarg, sizeof(io)))
		return -EFAULT;
	if ((io.flags & ~VFPGA_REG_READ_ONLY) || io.reserved || (unsigned long)io.addr != io.addr)
		return -EINVAL;
	/*
	 * Under reg_lock, no UNREGISTER can free the slot reserved here (ids
	 * are easy to guess) for another REGISTER to take before it is filled.
	 */
	if (mutex_lock_killable(&vf->reg_lock))
		return -EINTR;
	/* The slot first (reserved: runs cannot see it yet), so a full table pins nothing. */
	err = xa_alloc(&vf->regs, &id, NULL, XA_LIMIT(1, max(vfpga_max_registered, 1U)),
		       GFP_KERNEL);
	if (err) {
		err = err == -EBUSY ? -ENOSPC : err;
		goto out;
	}
	reg = vfpga_reg_new(io.addr, io.len, io.flags & VFPGA_REG_READ_ONLY,
			    vf->vd->max_seg_size);
	if (IS_ERR(reg)) {
		xa_release(&vf->regs, id);
		err = PTR_ERR(reg);
		goto out;
	}
	err = xa_err(xa_store(&vf->regs, id, reg, GFP_KERNEL));
	if (err) {
		xa_release(&vf->regs, id);
		vfpga_reg_put(reg);
		goto out;
	}
	io.id = id;
	io.segments = reg->sgt.orig_nents;
	if (copy_to_user(uarg, &io, sizeof(io))) {
		/* Nobody learnt the id: take it back. */
		vfpga_reg_put(xa_erase(&vf->regs, id));
		err = -EFAULT;
	}
out:
	mutex_unlock(&vf->reg_lock);
	return err;
}

static int vfpga_ioc_unregister(struct vfpga_file *vf, void __user *uarg)
{
	struct vfpga_reg *reg;
	u32 id;

	if (get_user(id, (u32 __user *)uarg))
		return -EFAULT;
	/* Runs in flight keep their own references: the pages stay pinned until they end. */
	mutex_lock(&vf->reg_lock);
	reg = xa_erase(&vf->regs, id);
	mutex_unlock(&vf->reg_lock);
	if (!reg)
		return -ENOENT;
	vfpga_reg_put(reg);
	return 0;
}

/* Adds bytes [a->addr, a->addr + a->value) of registered buffer a->buf_id to req. */
static int vfpga_req_registered(struct vfpga_file *vf, struct vfpga_req *req,
				const struct vfpga_ioc_arg *a)
{
	struct vfpga_reg *reg;
	u64 end;

	xa_lock(&vf->regs);
	reg = xa_load(&vf->regs, a->buf_id);
	if (reg)
		kref_get(&reg->ref);
	xa_unlock(&vf->regs);
	if (!reg)
		return -ENOENT;
	if (check_add_overflow(a->addr, a->value, &end) || end > reg->len) {
		vfpga_reg_put(reg);
		return -EINVAL;
	}
	if (a->kind == VFPGA_ARG_OUT && !reg->writable) {
		vfpga_reg_put(reg);
		return -EACCES;
	}
	if (vfpga_req_rbuf(req, a->kind, a->ty, reg, a->addr, a->value)) {
		vfpga_reg_put(reg);
		return -EINVAL;
	}
	return 0;
}

static int vfpga_check_run(const struct vfpga_ioc_run *io)
{
	unsigned int i;

	if (io->flags || io->n_args > VFPGA_MAX_ARGS)
		return -EINVAL;
	for (i = 0; i < io->n_args; i++) {
		const struct vfpga_ioc_arg *a = &io->args[i];

		if ((a->flags & ~VFPGA_IOC_ARG_REGISTERED) || a->ty < VFPGA_T_U8 ||
		    a->ty > VFPGA_T_F64)
			return -EINVAL;
		if (!(a->flags & VFPGA_IOC_ARG_REGISTERED) && a->buf_id)
			return -EINVAL;
		switch (a->kind) {
		case VFPGA_ARG_SCALAR:
			if (a->addr || a->flags)
				return -EINVAL;
			break;
		case VFPGA_ARG_IN:
		case VFPGA_ARG_OUT:
			break;
		default:
			return -EINVAL;
		}
	}
	return 0;
}

static int vfpga_ioc_run(struct vfpga_file *vf, void __user *uarg)
{
	const size_t out = offsetof(struct vfpga_ioc_run, status);
	struct vfpga_ioc_run io;
	struct vfpga_req *req;
	unsigned int i;
	int err;

	if (copy_from_user(&io, uarg, sizeof(io)))
		return -EFAULT;
	err = vfpga_check_run(&io);
	if (err)
		return err;
	req = vfpga_req_new(vf->vd, vfpga_request_queue(vf->vd), VFPGA_OP_RUN, io.session);
	if (!req)
		return -ENOMEM;
	for (i = 0; i < io.n_args; i++) {
		const struct vfpga_ioc_arg *a = &io.args[i];

		if (a->kind == VFPGA_ARG_SCALAR) {
			vfpga_req_scalar(req, a->ty, a->value);
			continue;
		}
		if (a->flags & VFPGA_IOC_ARG_REGISTERED)
			err = vfpga_req_registered(vf, req, a);
		else
			err = vfpga_req_ubuf(req, a->kind, a->ty, a->addr, a->value);
		if (err)
			goto out;
	}

	io.segments = 0;
	io.detail = 0;
	io.written = 0;
	io.duration_ns = 0;
	if (!vfpga_session_known(vf, io.session)) {
		io.status = VFPGA_S_BAD_SESSION;
	} else {
		if (down_killable(&vf->runs)) {
			err = -EINTR;
			goto out;
		}
		err = vfpga_req_exec(req);
		up(&vf->runs);
		if (err)
			goto out;
		io.segments = min_t(unsigned int, req->segs, U16_MAX);
		io.status = le16_to_cpu(req->resp.status);
		io.detail = le32_to_cpu(req->resp.detail);
		io.written = le64_to_cpu(req->resp.written);
		io.duration_ns = le64_to_cpu(req->resp.duration_ns);
	}
	/* Only the output fields: the arguments stay as the caller left them. */
	if (copy_to_user(uarg + out, (char *)&io + out, sizeof(io) - out))
		err = -EFAULT;
out:
	vfpga_req_put(req);
	return err;
}

static int vfpga_ioc_nop(struct vfpga_file *vf, void __user *uarg)
{
	struct vfpga_ioc_nop io;
	struct vfpga_req *req;
	u64 start;
	int err;

	if (copy_from_user(&io, uarg, sizeof(io)))
		return -EFAULT;
	if (memchr_inv(io.reserved, 0, sizeof(io.reserved)))
		return -EINVAL;
	req = vfpga_req_new(vf->vd, vfpga_request_queue(vf->vd), VFPGA_OP_NOP, 0);
	if (!req)
		return -ENOMEM;
	start = ktime_get_ns();
	err = vfpga_req_exec(req);
	if (err)
		goto out;
	io.duration_ns = ktime_get_ns() - start;
	io.status = le16_to_cpu(req->resp.status);
	if (copy_to_user(uarg, &io, sizeof(io)))
		err = -EFAULT;
out:
	vfpga_req_put(req);
	return err;
}

static long vfpga_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct vfpga_file *vf = file->private_data;
	void __user *uarg = (void __user *)arg;

	/* Pages pinned for a removed device can still be given back. */
	if (cmd == VFPGA_IOC_UNREGISTER)
		return vfpga_ioc_unregister(vf, uarg);
	if (READ_ONCE(vf->vd->dead))
		return -ENODEV;
	switch (cmd) {
	case VFPGA_IOC_INFO:
		return vfpga_ioc_info(vf, uarg);
	case VFPGA_IOC_LIST_KERNELS:
		return vfpga_ioc_list(vf, uarg);
	case VFPGA_IOC_OPEN_SESSION:
		return vfpga_ioc_open_session(vf, uarg);
	case VFPGA_IOC_CLOSE_SESSION:
		return vfpga_ioc_close_session(vf, uarg);
	case VFPGA_IOC_RUN:
		return vfpga_ioc_run(vf, uarg);
	case VFPGA_IOC_LOAD_BITSTREAM:
		return vfpga_ioc_load(vf, uarg);
	case VFPGA_IOC_STATS:
		return vfpga_ioc_stats(vf, uarg);
	case VFPGA_IOC_NOP:
		return vfpga_ioc_nop(vf, uarg);
	case VFPGA_IOC_LIMITS:
		return vfpga_ioc_limits(vf, uarg);
	case VFPGA_IOC_REGISTER:
		return vfpga_ioc_register(vf, uarg);
	default:
		return -ENOTTY;
	}
}

/*
 * Sends CLOSE_SESSION for every session of a file being released, without
 * waiting for the answers (release may run in a dying task, where killable
 * waits end at once). Without may_wait, a full control queue stops it with
 * -EAGAIN, leaving the rest on the list.
 */
static int vfpga_close_sessions(struct vfpga_file *vf, bool may_wait)
{
	struct vfpga_session *s, *tmp;
	int err;

	list_for_each_entry_safe(s, tmp, &vf->sessions, node) {
		if (!READ_ONCE(vf->vd->dead)) {
			err = vfpga_send_close(vf->vd, s->id, may_wait);
			if (err && err != -ENODEV && !may_wait)
				return -EAGAIN;
		}
		list_del(&s->node);
		kfree(s);
	}
	return 0;
}

static void vfpga_file_free(struct vfpga_file *vf)
{
	struct vfpga_reg *reg;
	unsigned long id;

	xa_for_each(&vf->regs, id, reg)
		vfpga_reg_put(reg);
	xa_destroy(&vf->regs);
	vfpga_put(vf->vd);
	kfree(vf);
}

static void vfpga_release_work(struct work_struct *work)
{
	struct vfpga_file *vf = container_of(work, struct vfpga_file, release_work);

	vfpga_close_sessions(vf, true);
	vfpga_file_free(vf);
}

static int vfpga_open(struct inode *inode, struct file *file)
{
	struct vfpga_file *vf;
	struct vfpga_dev *vd;

	vd = vfpga_get_by_minor(iminor(inode));
	if (!vd)
		return -ENODEV;
	vf = kzalloc(sizeof(*vf), GFP_KERNEL);
	if (!vf)
		goto err_put;
	vf->vd = vd;
	spin_lock_init(&vf->lock);
	INIT_LIST_HEAD(&vf->sessions);
	xa_init_flags(&vf->regs, XA_FLAGS_ALLOC1);
	mutex_init(&vf->reg_lock);
	sema_init(&vf->runs, max(vfpga_max_runs, 1U));
	INIT_WORK(&vf->release_work, vfpga_release_work);
	file->private_data = vf;
	return stream_open(inode, file);

err_put:
	vfpga_put(vd);
	return -ENOMEM;
}

static int vfpga_release(struct inode *inode, struct file *file)
{
	struct vfpga_file *vf = file->private_data;

	if (vfpga_close_sessions(vf, false)) {
		/* Control queue full: finish from vfpga_wq, which may wait for room. */
		queue_work(vfpga_wq, &vf->release_work);
		return 0;
	}
	vfpga_file_free(vf);
	return 0;
}

const struct file_operations vfpga_fops = {
	.owner = THIS_MODULE,
	.open = vfpga_open,
	.release = vfpga_release,
	.unlocked_ioctl = vfpga_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};
