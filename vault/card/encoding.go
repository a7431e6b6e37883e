package card

import (
	"encoding/binary"
	"errors"
)

// ErrEncoding: a decoded card buffer is malformed.
var ErrEncoding = errors.New("card: malformed encoding")

const encodingV1 = 1

// Encode serializes a card (number, expiry, holder name, and the CVC when
// present) into a fresh buffer for sealing. The buffer holds plaintext: seal
// it, then wipe it (clear). Layout v1:
// version | len(pan) | pan | month | year(2) | len(name)(2) | name | len(cvc) | cvc
func Encode(c Card) []byte {
	pan, cvc := c.Number.RevealDigits(), c.CVC.RevealDigits()
	b := make([]byte, 0, 1+1+len(pan)+1+2+2+len(c.HolderName)+1+len(cvc))
	b = append(b, encodingV1, byte(len(pan)))
	b = append(b, pan...)
	b = append(b, byte(c.ExpMonth))
	b = binary.BigEndian.AppendUint16(b, uint16(c.ExpYear))
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.HolderName)))
	b = append(b, c.HolderName...)
	b = append(b, byte(len(cvc)))
	b = append(b, cvc...)
	return b
}

// Decode parses a buffer made by Encode into a Card with its own PAN and CVC
// buffers; the caller should wipe both b and the card.
func Decode(b []byte) (Card, error) {
	var c Card
	if len(b) < 2 || b[0] != encodingV1 {
		return c, ErrEncoding
	}
	n := int(b[1])
	b = b[2:]
	if len(b) < n+1+2+2 {
		return c, ErrEncoding
	}
	pan, err := NewPANFromDigits(append(make([]byte, 0, n), b[:n]...))
	if err != nil {
		return c, ErrEncoding
	}
	b = b[n:]
	c.Number = pan
	c.ExpMonth = int(b[0])
	c.ExpYear = int(binary.BigEndian.Uint16(b[1:3]))
	nl := int(binary.BigEndian.Uint16(b[3:5]))
	b = b[5:]
	if len(b) < nl+1 {
		pan.Wipe()
		return Card{}, ErrEncoding
	}
	c.HolderName = string(b[:nl])
	b = b[nl:]
	cl := int(b[0])
	b = b[1:]
	if len(b) != cl {
		pan.Wipe()
		return Card{}, ErrEncoding
	}
	if cl > 0 {
		c.CVC = NewCVCFromDigits(append(make([]byte, 0, cl), b...))
	}
	return c, nil
}
