//go:build !unix

package main

// openNonBlocking is not needed where there are no FIFOs to open.
const openNonBlocking = 0
