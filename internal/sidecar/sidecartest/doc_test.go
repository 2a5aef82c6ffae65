// Package sidecartest runs the sidecars as the launch does: from the
// sidecar image, in containers on networks the test creates, with the
// configs mounted. Everything else about them is tested in-process in
// their own packages.
package sidecartest
