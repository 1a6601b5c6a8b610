package metadata

func lookup(t *Tree, path string) (*Node, bool) {
	n, _ := t.Root.Lookup(path)
	return n, n != nil
}
