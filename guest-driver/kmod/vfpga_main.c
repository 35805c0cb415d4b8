// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio_vfpga: FPGA accelerators behind a vfpga virtio device.
 *
 * Module setup, probe and remove, the virtqueues and their completion
 * callback. Queue 0 is the control queue, queues 1..N the request queues
 * (N from the config space).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cdev.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/uidgid.h>
#include <linux/user_namespace.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <linux/xarray.h>

#include "vfpga.h"

static unsigned int vfpga_device_id = VFPGA_DEFAULT_VIRTIO_ID;
module_param_named(device_id, vfpga_device_id, uint, 0444);
MODULE_PARM_DESC(device_id, "virtio device ID to bind (default 21)");

static unsigned int vfpga_gid;
module_param_named(gid, vfpga_gid, uint, 0444);
MODULE_PARM_DESC(gid, "group of /dev/vfpgaN, mode 0660 (default 0; see 60-vfpga.rules)");

struct workqueue_struct *vfpga_wq;

static dev_t vfpga_devt;
static struct cdev vfpga_cdev;
/* minor -> struct vfpga_dev; an entry holds no reference of its own */
static DEFINE_XARRAY_ALLOC(vfpga_devs);

#ifdef VFPGA_CONST_DEVNODE
static char *vfpga_devnode(const struct device *dev, umode_t *mode, kuid_t *uid, kgid_t *gid)
#else
static char *vfpga_devnode(struct device *dev, umode_t *mode, kuid_t *uid, kgid_t *gid)
#endif
{
	kgid_t group = make_kgid(&init_user_ns, vfpga_gid);

	if (mode)
		*mode = 0660;
	if (gid && gid_valid(group))
		*gid = group;
	return NULL;
}

static const struct device_type vfpga_device_type = {
	.name = "vfpga",
	.devnode = vfpga_devnode,
};

static struct class vfpga_class = {
	.name = "vfpga",
};

static void vfpga_free(struct kref *ref)
{
	kfree(container_of(ref, struct vfpga_dev, ref));
}

void vfpga_put(struct vfpga_dev *vd)
{
	kref_put(&vd->ref, vfpga_free);
}

/* The device behind a minor with a reference for the caller, or NULL. */
struct vfpga_dev *vfpga_get_by_minor(unsigned int minor)
{
	struct vfpga_dev *vd;

	xa_lock(&vfpga_devs);
	vd = xa_load(&vfpga_devs, minor);
	if (vd)
		vfpga_get(vd);
	xa_unlock(&vfpga_devs);
	return vd;
}

static void vfpga_dev_release(struct device *dev)
{
	vfpga_put(container_of(dev, struct vfpga_dev, dev));
}

/* Completes what the device returned; with the queue's lock held, device alive. */
static void vfpga_queue_reap(struct vfpga_queue *q)
{
	struct vfpga_req *req;
	unsigned int len;
	bool returned = false;

	while ((req = virtqueue_get_buf(q->vq, &len))) {
		vfpga_req_complete(req, 0, len);
		returned = true;
	}
	if (returned) {
		q->space_seq++;
		wake_up_all(&q->space_wq);
	}
}

static void vfpga_vq_done(struct virtqueue *vq)
{
	struct vfpga_dev *vd = vq->vdev->priv;
	struct vfpga_queue *q = &vd->queues[vq->index];
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	/* Once dead, remove() takes every buffer back itself. */
	if (!vd->dead) {
		/* While submitters poll, callbacks stay off: the last one turns them on. */
		do {
			virtqueue_disable_cb(vq);
			vfpga_queue_reap(q);
		} while (!q->pollers && !virtqueue_enable_cb(vq));
	}
	spin_unlock_irqrestore(&q->lock, flags);
}

/*
 * Hybrid polling (vfpga_req_poll()): between begin and end, a submitter
 * completes what the device returned on q without waiting for its interrupt.
 * Callbacks are off while anyone polls, so the device does not interrupt for
 * completions a poller takes (each such interrupt would find nothing, and an
 * interrupt that keeps finding nothing is eventually disabled as spurious);
 * the last poller turns them on again and takes what came meanwhile. The
 * virtqueue is touched only while the device is neither dead nor frozen
 * (restore() makes new virtqueues with callbacks on).
 */
void vfpga_queue_poll_begin(struct vfpga_dev *vd, struct vfpga_queue *q)
{
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	if (!q->pollers++ && !vd->dead && !vd->frozen)
		virtqueue_disable_cb(q->vq);
	spin_unlock_irqrestore(&q->lock, flags);
}

/* False when the device is dead or frozen: polling is over. */
bool vfpga_queue_poll(struct vfpga_dev *vd, struct vfpga_queue *q)
{
	unsigned long flags;
	bool alive;

	/* Busy: a submitter or the callback has the queue; look again next time. */
	if (!spin_trylock_irqsave(&q->lock, flags))
		return true;
	alive = !vd->dead && !vd->frozen;
	if (alive)
		vfpga_queue_reap(q);
	spin_unlock_irqrestore(&q->lock, flags);
	return alive;
}

void vfpga_queue_poll_end(struct vfpga_dev *vd, struct vfpga_queue *q)
{
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	if (!--q->pollers && !vd->dead && !vd->frozen) {
		while (!virtqueue_enable_cb(q->vq)) {
			virtqueue_disable_cb(q->vq);
			vfpga_queue_reap(q);
		}
	}
	spin_unlock_irqrestore(&q->lock, flags);
}

#ifdef VFPGA_HAVE_VQ_INFO
/* Linux 6.11 and later: find_vqs() takes struct virtqueue_info. */
static int vfpga_find_vqs(struct virtio_device *vdev, struct vfpga_dev *vd,
			  struct virtqueue **vqs)
{
	struct virtqueue_info *info;
	unsigned int i;
	int err;

	info = kcalloc(vd->nr_queues, sizeof(*info), GFP_KERNEL);
	if (!info)
		return -ENOMEM;
	for (i = 0; i < vd->nr_queues; i++) {
		info[i].name = vd->queues[i].name;
		info[i].callback = vfpga_vq_done;
	}
	err = virtio_find_vqs(vdev, vd->nr_queues, vqs, info, NULL);
	kfree(info);
	return err;
}
#else
static int vfpga_find_vqs(struct virtio_device *vdev, struct vfpga_dev *vd,
			  struct virtqueue **vqs)
{
	vq_callback_t **callbacks;
	const char **names;
	unsigned int i;
	int err = -ENOMEM;

	callbacks = kcalloc(vd->nr_queues, sizeof(*callbacks), GFP_KERNEL);
	if (!callbacks)
		return -ENOMEM;
	names = kcalloc(vd->nr_queues, sizeof(*names), GFP_KERNEL);
	if (!names)
		goto out_callbacks;
	for (i = 0; i < vd->nr_queues; i++) {
		names[i] = vd->queues[i].name;
		callbacks[i] = vfpga_vq_done;
	}
	err = virtio_find_vqs(vdev, vd->nr_queues, vqs, callbacks, names, NULL);
	kfree(names);
out_callbacks:
	kfree(callbacks);
	return err;
}
#endif

/* Makes the virtqueues (at probe and at restore) and sizes requests to them. */
static int vfpga_find_all_vqs(struct virtio_device *vdev, struct vfpga_dev *vd)
{
	unsigned int i, indirect_max;
	struct virtqueue **vqs;
	int err;

	vqs = kcalloc(vd->nr_queues, sizeof(*vqs), GFP_KERNEL);
	if (!vqs)
		return -ENOMEM;
	err = vfpga_find_vqs(vdev, vd, vqs);
	if (err)
		goto out;

	/*
	 * Descriptors per chain. With indirect descriptors virtio_ring puts a
	 * chain of any length in one table that takes a single ring entry, and
	 * the device takes up to max_segments descriptors after indirect
	 * expansion (docs/protocol.md, section 2), so the ring size does not
	 * bound a request: the precedent is virtio-blk, whose virtblk_probe()
	 * hands the config's seg_max (sg_elems, capped at
	 * VIRTIO_BLK_MAX_SG_ELEMS - 2) to the block layer whatever the ring
	 * size. Only without indirect descriptors is a chain at most the ring.
	 */
	indirect_max = min_t(size_t, VFPGA_MAX_INDIRECT_SEGS,
			     KMALLOC_MAX_SIZE / VFPGA_INDIRECT_ENTRY_BYTES);
	vd->indirect = virtio_has_feature(vdev, VIRTIO_RING_F_INDIRECT_DESC);
	for (i = 0; i < vd->nr_queues; i++) {
		struct vfpga_queue *q = &vd->queues[i];

		q->vq = vqs[i];
		q->ring_size = virtqueue_get_vring_size(q->vq);
		q->max_segs = min(vd->max_segments, vd->indirect ? indirect_max : q->ring_size);
	}
out:
	kfree(vqs);
	return err;
}

static int vfpga_init_vqs(struct virtio_device *vdev, struct vfpga_dev *vd)
{
	unsigned int i;
	int err;

	for (i = 0; i < vd->nr_queues; i++) {
		struct vfpga_queue *q = &vd->queues[i];

		spin_lock_init(&q->lock);
		init_waitqueue_head(&q->space_wq);
		if (i == VFPGA_CONTROL_QUEUE)
			strscpy(q->name, "control", sizeof(q->name));
		else
			snprintf(q->name, sizeof(q->name), "request.%u", i - 1);
	}
	err = vfpga_find_all_vqs(vdev, vd);
	if (err)
		return err;
	/* Sized once: restore() keeps the slots of requests still waiting for one. */
	for (i = 0; i < vd->nr_queues; i++)
		sema_init(&vd->queues[i].slots, vd->queues[i].ring_size);
	return 0;
}

/*
 * Marks the device dead (remove) or frozen (freeze) under every queue lock:
 * from then on no submitter touches a virtqueue.
 */
static void vfpga_fence(struct vfpga_dev *vd, bool *flag)
{
	unsigned int i;

	for (i = 0; i < vd->nr_queues; i++) {
		struct vfpga_queue *q = &vd->queues[i];

		spin_lock_irq(&q->lock);
		WRITE_ONCE(*flag, true);
		spin_unlock_irq(&q->lock);
		wake_up_all(&q->space_wq);
	}
}

/*
 * Resets the device so it stops using the rings, completes every chain it
 * still held with @error, and deletes the virtqueues.
 */
static void vfpga_del_vqs(struct virtio_device *vdev, struct vfpga_dev *vd, int error)
{
	struct vfpga_req *req;
	unsigned int i;

	virtio_reset_device(vdev);
	for (i = 0; i < vd->nr_queues; i++) {
		struct vfpga_queue *q = &vd->queues[i];

		spin_lock_irq(&q->lock);
		while ((req = virtqueue_detach_unused_buf(q->vq)))
			vfpga_req_complete(req, error, 0);
		spin_unlock_irq(&q->lock);
	}
	vdev->config->del_vqs(vdev);
}

static int vfpga_probe(struct virtio_device *vdev)
{
	struct vfpga_dev *vd;
	u32 magic, max_segments, max_args;
	u16 abi, nreq;
	u64 max_bytes;
	int err;

	if (!vdev->config->get) {
		dev_err(&vdev->dev, "no access to the config space\n");
		return -EINVAL;
	}
	virtio_cread_le(vdev, struct vfpga_config, magic, &magic);
	virtio_cread_le(vdev, struct vfpga_config, abi_version, &abi);
	if (magic != VFPGA_CONFIG_MAGIC || abi != VFPGA_ABI_VERSION) {
		dev_err(&vdev->dev, "config magic %#x ABI %u, expected %#x ABI %u\n",
			magic, abi, VFPGA_CONFIG_MAGIC, VFPGA_ABI_VERSION);
		return -ENODEV;
	}
	virtio_cread_le(vdev, struct vfpga_config, num_request_queues, &nreq);
	virtio_cread_le(vdev, struct vfpga_config, max_segments, &max_segments);
	virtio_cread_le(vdev, struct vfpga_config, max_args, &max_args);
	virtio_cread_le(vdev, struct vfpga_config, max_request_bytes, &max_bytes);
	if (!nreq) {
		dev_err(&vdev->dev, "device has no request queue\n");
		return -ENODEV;
	}
	if (nreq > VFPGA_MAX_REQUEST_QUEUES) {
		dev_info(&vdev->dev, "using %u of %u request queues\n",
			 VFPGA_MAX_REQUEST_QUEUES, nreq);
		nreq = VFPGA_MAX_REQUEST_QUEUES;
	}

	vd = kzalloc(struct_size(vd, queues, nreq + 1), GFP_KERNEL);
	if (!vd)
		return -ENOMEM;
	kref_init(&vd->ref);
	vd->nr_queues = nreq + 1;
	vd->max_args = min_t(u32, max_args, VFPGA_MAX_ARGS);
	vd->max_segments = max_segments;
	vd->max_request_bytes = min_t(u64, max_bytes, VFPGA_MAX_REQUEST_BYTES);
	vd->max_seg_size = max_t(size_t, PAGE_SIZE,
				 min_t(size_t, virtio_max_dma_size(vdev), UINT_MAX & PAGE_MASK));
	vd->can_load = virtio_has_feature(vdev, VIRTIO_VFPGA_F_LOAD_BITSTREAM);

	/* Reserve a minor; open() finds the device only once probe succeeded. */
	err = xa_alloc(&vfpga_devs, &vd->minor, NULL,
		       XA_LIMIT(0, VFPGA_MAX_DEVICES - 1), GFP_KERNEL);
	if (err)
		goto err_free;

	vdev->priv = vd;
	err = vfpga_init_vqs(vdev, vd);
	if (err) {
		/* Typically the VMM's virtqueue count (QEMU num_vqs) is below 1 + N. */
		dev_err(&vdev->dev, "cannot set up %u virtqueues (control + %u request queues): %d\n",
			vd->nr_queues, nreq, err);
		goto err_minor;
	}

	device_initialize(&vd->dev);
	vfpga_get(vd);			/* dropped by vfpga_dev_release() */
	vd->dev.class = &vfpga_class;
	vd->dev.type = &vfpga_device_type;
	vd->dev.parent = &vdev->dev;
	vd->dev.devt = MKDEV(MAJOR(vfpga_devt), vd->minor);
	vd->dev.release = vfpga_dev_release;
	err = dev_set_name(&vd->dev, "vfpga%u", vd->minor);
	if (err)
		goto err_put_dev;

	virtio_device_ready(vdev);
	err = device_add(&vd->dev);
	if (err)
		goto err_reset;
	err = xa_err(xa_store(&vfpga_devs, vd->minor, vd, GFP_KERNEL));
	if (err)
		goto err_del;

	dev_info(&vd->dev, "%u request queues, ring %u; per request %u descriptors (device %u, %s), %llu bytes, %u args%s\n",
		 nreq, vd->queues[1].ring_size, vd->queues[1].max_segs, vd->max_segments,
		 vd->indirect ? "indirect" : "no indirect",
		 vd->max_request_bytes, vd->max_args,
		 vd->can_load ? "; bitstream loading" : "");
	return 0;

err_del:
	device_del(&vd->dev);
err_reset:
	virtio_reset_device(vdev);
err_put_dev:
	put_device(&vd->dev);
	vdev->config->del_vqs(vdev);
err_minor:
	xa_erase(&vfpga_devs, vd->minor);
err_free:
	vfpga_put(vd);
	return err;
}

static void vfpga_remove(struct virtio_device *vdev)
{
	struct vfpga_dev *vd = vdev->priv;

	/* No new open(); open files keep vd and see it dead. */
	xa_erase(&vfpga_devs, vd->minor);
	device_del(&vd->dev);

	vfpga_fence(vd, &vd->dead);
	/* A restore() that failed left no virtqueue behind. */
	if (!vd->frozen)
		vfpga_del_vqs(vdev, vd, -ENODEV);

	put_device(&vd->dev);
	vfpga_put(vd);
}

#ifdef CONFIG_PM_SLEEP
/* How long freeze() lets the device finish the chains it holds. */
#define VFPGA_FREEZE_DRAIN	(10 * HZ)

static bool vfpga_queue_idle(struct vfpga_queue *q)
{
	bool idle;

	spin_lock_irq(&q->lock);
	idle = q->vq->num_free == q->ring_size;
	spin_unlock_irq(&q->lock);
	return idle;
}

/*
 * System sleep (and hibernation): new requests wait, the device finishes the
 * ones it holds (a run is never cut short while it can end), then it is reset
 * and its virtqueues go. A chain still held after VFPGA_FREEZE_DRAIN fails
 * with -EAGAIN. The reset closes the device's sessions: a program reopens
 * them after the resume (its runs on old ones answer BAD_SESSION).
 */
static int vfpga_freeze(struct virtio_device *vdev)
{
	struct vfpga_dev *vd = vdev->priv;
	unsigned long left = VFPGA_FREEZE_DRAIN;
	unsigned int i;

	vfpga_fence(vd, &vd->frozen);
	for (i = 0; i < vd->nr_queues && left; i++)
		left = wait_event_timeout(vd->queues[i].space_wq,
					  vfpga_queue_idle(&vd->queues[i]), left);
	if (!left)
		vfpga_warn(vd, "requests still running after %us: they fail with -EAGAIN\n",
			   VFPGA_FREEZE_DRAIN / HZ);
	vfpga_del_vqs(vdev, vd, -EAGAIN);
	return 0;
}

static int vfpga_restore(struct virtio_device *vdev)
{
	struct vfpga_dev *vd = vdev->priv;
	unsigned int i;
	int err;

	err = vfpga_find_all_vqs(vdev, vd);
	if (err) {
		dev_err(&vdev->dev, "cannot set up the virtqueues again: %d\n", err);
		/* Waiting submitters get -ENODEV; remove() finds no virtqueue. */
		vfpga_fence(vd, &vd->dead);
		return err;
	}
	virtio_device_ready(vdev);
	for (i = 0; i < vd->nr_queues; i++) {
		struct vfpga_queue *q = &vd->queues[i];

		spin_lock_irq(&q->lock);
		WRITE_ONCE(vd->frozen, false);
		q->space_seq++;
		spin_unlock_irq(&q->lock);
		wake_up_all(&q->space_wq);
	}
	return 0;
}
#endif

static struct virtio_device_id vfpga_id_table[] = {
	{ VFPGA_DEFAULT_VIRTIO_ID, VIRTIO_DEV_ANY_ID },
	{ 0 },
};
MODULE_DEVICE_TABLE(virtio, vfpga_id_table);

static unsigned int vfpga_features[] = {
	VIRTIO_VFPGA_F_LOAD_BITSTREAM,
};

static struct virtio_driver vfpga_driver = {
	.driver.name = KBUILD_MODNAME,
	.driver.owner = THIS_MODULE,
	.id_table = vfpga_id_table,
	.feature_table = vfpga_features,
	.feature_table_size = ARRAY_SIZE(vfpga_features),
	.probe = vfpga_probe,
	.remove = vfpga_remove,
#ifdef CONFIG_PM_SLEEP
	.freeze = vfpga_freeze,
	.restore = vfpga_restore,
#endif
};

static int __init vfpga_init(void)
{
	int err;

	if (!vfpga_device_id || vfpga_device_id == VIRTIO_DEV_ANY_ID) {
		pr_err("invalid device_id %u\n", vfpga_device_id);
		return -EINVAL;
	}
	vfpga_id_table[0].device = vfpga_device_id;
	if (vfpga_device_id != VFPGA_DEFAULT_VIRTIO_ID)
		pr_info("binding virtio device ID %u; the module's alias names only %u: for autoloading add 'alias virtio:d%08Xv* virtio_vfpga' to modprobe.d\n",
			vfpga_device_id, VFPGA_DEFAULT_VIRTIO_ID, vfpga_device_id);

	err = vfpga_req_cache_init();
	if (err)
		return err;
	vfpga_wq = alloc_workqueue("vfpga", WQ_UNBOUND, 0);
	if (!vfpga_wq) {
		err = -ENOMEM;
		goto err_cache;
	}
	err = alloc_chrdev_region(&vfpga_devt, 0, VFPGA_MAX_DEVICES, "vfpga");
	if (err)
		goto err_wq;
	err = class_register(&vfpga_class);
	if (err)
		goto err_region;
	cdev_init(&vfpga_cdev, &vfpga_fops);
	vfpga_cdev.owner = THIS_MODULE;
	err = cdev_add(&vfpga_cdev, vfpga_devt, VFPGA_MAX_DEVICES);
	if (err)
		goto err_class;
	err = register_virtio_driver(&vfpga_driver);
	if (err)
		goto err_cdev;
	return 0;

err_cdev:
	cdev_del(&vfpga_cdev);
err_class:
	class_unregister(&vfpga_class);
err_region:
	unregister_chrdev_region(vfpga_devt, VFPGA_MAX_DEVICES);
err_wq:
	destroy_workqueue(vfpga_wq);
err_cache:
	vfpga_req_cache_exit();
	return err;
}

static void __exit vfpga_exit(void)
{
	unregister_virtio_driver(&vfpga_driver);
	cdev_del(&vfpga_cdev);
	class_unregister(&vfpga_class);
	unregister_chrdev_region(vfpga_devt, VFPGA_MAX_DEVICES);
	/* Runs what is left: frees of returned requests, closes of released files. */
	destroy_workqueue(vfpga_wq);
	vfpga_req_cache_exit();
}

module_init(vfpga_init);
module_exit(vfpga_exit);

MODULE_DESCRIPTION("vfpga: FPGA accelerators through a virtio device");
MODULE_LICENSE("GPL");
