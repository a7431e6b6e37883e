package book

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/obolpay/obol/internal/money"
)

// Config is the book's settings: defaults for every merchant and overrides
// per merchant, loaded from YAML (see ledger/README.md).
type Config struct {
	// AuthorizationHold is how long an authorization holds funds before the
	// expiry sweep releases it (default 7 days).
	AuthorizationHold time.Duration `yaml:"authorization_hold"`
	// Defaults apply to merchants without an entry.
	Defaults MerchantSettings `yaml:"defaults"`
	// Merchants override the defaults field by field.
	Merchants map[string]MerchantSettings `yaml:"merchants"`
}

// MerchantSettings are a merchant's pricing and payout terms.
type MerchantSettings struct {
	// FeeBasisPoints is the percentage fee (1 bp = 0.01 %).
	FeeBasisPoints *int64 `yaml:"fee_bps"`
	// FeeFixed is the fixed fee per capture in minor units, per currency.
	FeeFixed map[string]int64 `yaml:"fee_fixed"`
	// Schedule is daily, weekly or manual.
	Schedule string `yaml:"payout_schedule"`
	// PayoutWeekday is the day weekly payouts run (e.g. "monday").
	PayoutWeekday string `yaml:"payout_weekday"`
	// DelayDays is N in T+N: captured funds become available N days later.
	DelayDays *int `yaml:"delay_days"`
	// MinimumPayout per currency in minor units (default 0: any positive amount).
	MinimumPayout map[string]int64 `yaml:"minimum_payout"`
	// ReserveBasisPoints of released funds are held in a rolling reserve
	// for ReserveDays.
	ReserveBasisPoints *int64 `yaml:"reserve_bps"`
	ReserveDays        *int   `yaml:"reserve_days"`
}

// Terms are a merchant's resolved settings.
type Terms struct {
	FeeBasisPoints     int64
	FeeFixed           map[string]int64
	Schedule           string
	PayoutWeekday      time.Weekday
	DelayDays          int
	MinimumPayout      map[string]int64
	ReserveBasisPoints int64
	ReserveDays        int
}

// Fee is the merchant's fee in a currency.
func (t Terms) Fee(currency string) money.Fee {
	return money.Fee{BasisPoints: t.FeeBasisPoints, Fixed: t.FeeFixed[currency]}
}

var weekdays = map[string]time.Weekday{"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday, "thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday}

func (c *Config) fill() {
	if c.AuthorizationHold == 0 {
		c.AuthorizationHold = 7 * 24 * time.Hour
	}
	d := &c.Defaults
	if d.FeeBasisPoints == nil {
		v := int64(290)
		d.FeeBasisPoints = &v
	}
	if d.FeeFixed == nil {
		d.FeeFixed = map[string]int64{"USD": 30, "EUR": 25, "GBP": 20}
	}
	if d.Schedule == "" {
		d.Schedule = "daily"
	}
	if d.PayoutWeekday == "" {
		d.PayoutWeekday = "monday"
	}
	if d.DelayDays == nil {
		v := 2
		d.DelayDays = &v
	}
	if d.ReserveBasisPoints == nil {
		var v int64
		d.ReserveBasisPoints = &v
	}
	if d.ReserveDays == nil {
		v := 90
		d.ReserveDays = &v
	}
}

// Merchant resolves a merchant's terms.
func (c *Config) Merchant(id string) Terms {
	d, o := c.Defaults, c.Merchants[id]
	t := Terms{FeeBasisPoints: *d.FeeBasisPoints, FeeFixed: d.FeeFixed, Schedule: d.Schedule, PayoutWeekday: weekdays[d.PayoutWeekday],
		DelayDays: *d.DelayDays, MinimumPayout: d.MinimumPayout, ReserveBasisPoints: *d.ReserveBasisPoints, ReserveDays: *d.ReserveDays}
	if o.FeeBasisPoints != nil {
		t.FeeBasisPoints = *o.FeeBasisPoints
	}
	if o.FeeFixed != nil {
		t.FeeFixed = o.FeeFixed
	}
	if o.Schedule != "" {
		t.Schedule = o.Schedule
	}
	if o.PayoutWeekday != "" {
		t.PayoutWeekday = weekdays[o.PayoutWeekday]
	}
	if o.DelayDays != nil {
		t.DelayDays = *o.DelayDays
	}
	if o.MinimumPayout != nil {
		t.MinimumPayout = o.MinimumPayout
	}
	if o.ReserveBasisPoints != nil {
		t.ReserveBasisPoints = *o.ReserveBasisPoints
	}
	if o.ReserveDays != nil {
		t.ReserveDays = *o.ReserveDays
	}
	return t
}

// Validate checks every setting, naming the offending one.
func (c *Config) Validate() error {
	check := func(where string, s MerchantSettings) error {
		if s.FeeBasisPoints != nil && (*s.FeeBasisPoints < 0 || *s.FeeBasisPoints > 10_000) {
			return fmt.Errorf("%s.fee_bps: must be 0-10000", where)
		}
		for cur, v := range s.FeeFixed {
			if !money.Valid(cur) || v < 0 {
				return fmt.Errorf("%s.fee_fixed.%s: must be an ISO 4217 code with a non-negative amount", where, cur)
			}
		}
		for cur, v := range s.MinimumPayout {
			if !money.Valid(cur) || v < 0 {
				return fmt.Errorf("%s.minimum_payout.%s: must be an ISO 4217 code with a non-negative amount", where, cur)
			}
		}
		switch s.Schedule {
		case "", "daily", "weekly", "manual":
		default:
			return fmt.Errorf("%s.payout_schedule: %q is not daily, weekly or manual", where, s.Schedule)
		}
		if _, ok := weekdays[strings.ToLower(s.PayoutWeekday)]; s.PayoutWeekday != "" && !ok {
			return fmt.Errorf("%s.payout_weekday: %q is not a day of the week", where, s.PayoutWeekday)
		}
		if s.DelayDays != nil && (*s.DelayDays < 0 || *s.DelayDays > 365) {
			return fmt.Errorf("%s.delay_days: must be 0-365", where)
		}
		if s.ReserveBasisPoints != nil && (*s.ReserveBasisPoints < 0 || *s.ReserveBasisPoints > 10_000) {
			return fmt.Errorf("%s.reserve_bps: must be 0-10000", where)
		}
		if s.ReserveDays != nil && (*s.ReserveDays < 0 || *s.ReserveDays > 730) {
			return fmt.Errorf("%s.reserve_days: must be 0-730", where)
		}
		return nil
	}
	if c.AuthorizationHold < 0 {
		return fmt.Errorf("authorization_hold: must not be negative")
	}
	if err := check("defaults", c.Defaults); err != nil {
		return err
	}
	for id, s := range c.Merchants {
		if !validID(id) {
			return fmt.Errorf("merchants.%s: %v", id, ErrMerchantID)
		}
		if err := check("merchants."+id, s); err != nil {
			return err
		}
	}
	return nil
}

// ParseConfig reads YAML settings strictly (unknown keys are errors).
func ParseConfig(b []byte) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && err.Error() != "EOF" {
		return nil, fmt.Errorf("ledger settings: %w", err)
	}
	for id, s := range c.Merchants {
		s.PayoutWeekday = strings.ToLower(s.PayoutWeekday)
		c.Merchants[id] = s
	}
	c.Defaults.PayoutWeekday = strings.ToLower(c.Defaults.PayoutWeekday)
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("ledger settings: %w", err)
	}
	c.fill()
	return c, nil
}

// LoadConfig reads settings from a file ("" = defaults).
func LoadConfig(path string) (*Config, error) {
	if path == "" {
		c := &Config{}
		c.fill()
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ledger settings: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
