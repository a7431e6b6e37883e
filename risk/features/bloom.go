package features

import "hash/maphash"

// bloom is a fixed-size Bloom filter of key names (2 MiB, 4 hashes: about
// 0.2 % false positives at a million names, 2 % at four million). A false
// positive costs one round trip, never a wrong count.
type bloom struct {
	seed maphash.Seed
	bits []uint64
}

const bloomBits = 1 << 24

func newBloom() *bloom {
	return &bloom{seed: maphash.MakeSeed(), bits: make([]uint64, bloomBits/64)}
}

func (b *bloom) idx(s string) [4]uint32 {
	h := maphash.String(b.seed, s)
	h1, h2 := uint32(h), uint32(h>>32)|1
	var out [4]uint32
	for i := range out {
		out[i] = (h1 + uint32(i)*h2) % bloomBits
	}
	return out
}

func (b *bloom) add(s string) {
	for _, i := range b.idx(s) {
		b.bits[i/64] |= 1 << (i % 64)
	}
}

func (b *bloom) has(s string) bool {
	for _, i := range b.idx(s) {
		if b.bits[i/64]&(1<<(i%64)) == 0 {
			return false
		}
	}
	return true
}
