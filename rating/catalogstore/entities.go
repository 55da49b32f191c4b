package catalogstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/creditmeter/creditmeter/rating"
)

// CreateCurrency validates and stores a credit currency.
func (s *Store) CreateCurrency(ctx context.Context, c *rating.CreditCurrency) (_ bool, err error) {
	defer classify(&err)
	if err := rating.ValidateCurrency(c); err != nil {
		return false, err
	}
	return s.create(ctx, kCurrencies, c.Code, c)
}

// CreateFeature validates and stores a feature.
func (s *Store) CreateFeature(ctx context.Context, f *rating.Feature) (_ bool, err error) {
	defer classify(&err)
	if err := rating.ValidateFeature(f); err != nil {
		return false, err
	}
	return s.create(ctx, kFeatures, f.ID, f)
}

// CreateCustomer validates and stores a customer.
func (s *Store) CreateCustomer(ctx context.Context, c *rating.Customer) (_ bool, err error) {
	defer classify(&err)
	if err := rating.ValidateCustomer(c); err != nil {
		return false, err
	}
	return s.create(ctx, kCustomers, c.ID, c)
}

// ReplaceCustomer validates and stores c over the customer of its id, which
// must exist.
func (s *Store) ReplaceCustomer(ctx context.Context, c *rating.Customer) (err error) {
	defer classify(&err)
	if err := rating.ValidateCustomer(c); err != nil {
		return err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	n, err := replaceScript.Run(ctx, s.rc, []string{s.key(kCustomers), s.key(kVersion), s.key(kChanges)}, c.ID, b, kCustomers).Int()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: customers %q", ErrNotFound, c.ID)
	}
	return nil
}

// Currency returns a credit currency.
func (s *Store) Currency(ctx context.Context, code string) (_ *rating.CreditCurrency, err error) {
	defer classify(&err)
	v := new(rating.CreditCurrency)
	return v, s.get(ctx, kCurrencies, code, v)
}

// Feature returns a feature.
func (s *Store) Feature(ctx context.Context, id string) (_ *rating.Feature, err error) {
	defer classify(&err)
	v := new(rating.Feature)
	return v, s.get(ctx, kFeatures, id, v)
}

// Customer returns a customer.
func (s *Store) Customer(ctx context.Context, id string) (_ *rating.Customer, err error) {
	defer classify(&err)
	v := new(rating.Customer)
	return v, s.get(ctx, kCustomers, id, v)
}

// Currencies lists the credit currencies by code.
func (s *Store) Currencies(ctx context.Context) (_ []*rating.CreditCurrency, err error) {
	defer classify(&err)
	return list(ctx, s, kCurrencies, func(v *rating.CreditCurrency) string { return v.Code })
}

// Features lists the features by id.
func (s *Store) Features(ctx context.Context) (_ []*rating.Feature, err error) {
	defer classify(&err)
	return list(ctx, s, kFeatures, func(v *rating.Feature) string { return v.ID })
}

// Customers lists the customers by id.
func (s *Store) Customers(ctx context.Context) (_ []*rating.Customer, err error) {
	defer classify(&err)
	return list(ctx, s, kCustomers, func(v *rating.Customer) string { return v.ID })
}
