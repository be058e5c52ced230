package disk

import (
	"os"

	"golang.org/x/sys/unix"
)

// writeBack waits until the range [waitOff, waitOff+waitLen) of f is on the
// device (nothing when waitLen is 0) and starts writing [off, off+n) back,
// so a streaming write keeps at most two ranges of dirty pages. Errors are
// left to the final fsync, which reports them.
func writeBack(f *os.File, waitOff, waitLen, off, n int64) {
	fd := int(f.Fd())
	if waitLen > 0 {
		_ = unix.SyncFileRange(fd, waitOff, waitLen,
			unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	}
	_ = unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE)
}
