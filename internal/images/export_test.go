package images

// SetBaseRepo makes b build and look up its base under repo instead of
// RepoBase, so tests can exercise the base build path in isolation.
func SetBaseRepo(b *Builder, repo string) { b.baseRepo = repo }

// WriteRootfsTar exposes writeRootfsTar to the external tests.
var WriteRootfsTar = writeRootfsTar

// BaseHash exposes baseHash to the external tests.
var BaseHash = baseHash

// SetNoLatest keeps b's builds from moving the :latest tags.
func SetNoLatest(b *Builder) { b.noLatest = true }
