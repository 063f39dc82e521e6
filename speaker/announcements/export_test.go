package announcements

// Kept is how many ServiceAnnouncements the Writer keeps a copy of.
func (w *Writer) Kept() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.last)
}
