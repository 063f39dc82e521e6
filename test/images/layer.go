package images

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// layer collects the entries of one image layer and writes them as a gzipped tar whose bytes
// depend only on the entries: sorted by name (a directory before what it holds), every time
// stamp at epoch, owners numeric without names, hard links to the first name in that order.
type layer struct {
	entries map[string]entry
}

type entry struct {
	hdr  tar.Header
	data []byte // contents of a file given in memory
	src  string // or the file on disk to copy
	ino  [2]uint64
}

func newLayer() *layer { return &layer{entries: map[string]entry{}} }

// file adds a regular file owned by root with the given contents.
func (l *layer) file(name string, mode int64, data []byte) {
	l.parents(name)
	l.entries[name] = entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, data: data}
}

// copyFile adds a regular file owned by root with the contents of src.
func (l *layer) copyFile(name string, mode int64, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	l.parents(name)
	l.entries[name] = entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: fi.Size()}, src: src}
	return nil
}

// dir adds a directory owned by root.
func (l *layer) dir(name string, mode int64) {
	l.parents(name)
	l.entries[name+"/"] = entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}}
}

// dirOwned adds a directory owned by uid:gid.
func (l *layer) dirOwned(name string, mode int64, uid, gid int) {
	l.parents(name)
	l.entries[name+"/"] = entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: gid}}
}

func (l *layer) symlink(name, target string) {
	l.parents(name)
	l.entries[name] = entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

// parents adds the directories above name that are not there yet, root's and 0755.
func (l *layer) parents(name string) {
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := l.entries[d+"/"]; ok {
			return
		}
		l.entries[d+"/"] = entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}}
	}
}

// treeOptions say how a directory tree becomes layer entries.
type treeOptions struct {
	// keepOwners keeps the files' uid and gid (a debootstrap rootfs has a few non-root files);
	// otherwise everything is root's, whoever extracted it.
	keepOwners bool
	// skip prunes a path (relative, slash-separated) and, for a directory, what it holds.
	skip func(rel string) bool
}

// tree adds everything under root. Device nodes, sockets and FIFOs are left out: the runtime
// provides /dev. Extended attributes (file capabilities) are not carried.
func (l *layer) tree(root string, o treeOptions) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if o.skip != nil && o.skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat", p)
		}
		e := entry{hdr: tar.Header{Name: rel, Mode: int64(fi.Mode().Perm())}}
		if fi.Mode()&fs.ModeSetuid != 0 {
			e.hdr.Mode |= 0o4000
		}
		if fi.Mode()&fs.ModeSetgid != 0 {
			e.hdr.Mode |= 0o2000
		}
		if fi.Mode()&fs.ModeSticky != 0 {
			e.hdr.Mode |= 0o1000
		}
		if o.keepOwners {
			e.hdr.Uid, e.hdr.Gid = int(st.Uid), int(st.Gid)
		}
		switch {
		case fi.Mode().IsRegular():
			e.hdr.Typeflag = tar.TypeReg
			e.hdr.Size = fi.Size()
			e.src = p
			if st.Nlink > 1 {
				e.ino = [2]uint64{st.Dev, st.Ino}
			}
		case fi.IsDir():
			e.hdr.Typeflag = tar.TypeDir
			e.hdr.Name += "/"
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.hdr.Typeflag = tar.TypeSymlink
			e.hdr.Linkname = target
			e.hdr.Mode = 0o777
		default:
			return nil
		}
		l.parents(rel)
		l.entries[e.hdr.Name] = e
		return nil
	})
}

// writeTo writes the layer as a gzipped tar to path.
func (l *layer) writeTo(path string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	// BestSpeed: the tarballs are imported locally, never pushed; time matters more than bytes.
	gz, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(l.entries))
	for n := range l.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	links := map[[2]uint64]string{}
	for _, n := range names {
		e := l.entries[n]
		hdr := e.hdr
		hdr.ModTime = epoch
		if e.ino != ([2]uint64{}) {
			if first, ok := links[e.ino]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				e.src = ""
			} else {
				links[e.ino] = n
			}
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return fmt.Errorf("layer entry %s: %w", n, err)
		}
		switch {
		case e.data != nil:
			if _, err := tw.Write(e.data); err != nil {
				return err
			}
		case e.src != "":
			if err := copyInto(tw, e.src, hdr.Size); err != nil {
				return fmt.Errorf("layer entry %s: %w", n, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func copyInto(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err == nil && n != size {
		err = fmt.Errorf("%s changed size while being read", src)
	}
	return err
}

// under reports whether rel is dir or inside it.
func under(rel, dir string) bool {
	return rel == dir || strings.HasPrefix(rel, dir+"/")
}
