//! Synthetic, deterministic records served by the demo API.
//!
//! The data is generated from the record index alone (no randomness, no
//! clock) so that demos and end-to-end tests can assert on exact values,
//! e.g. that customer "42" lives in a known city, run after run.

use serde::Serialize;

/// Number of customers; also reported as `total` by the list endpoint.
pub const CUSTOMER_COUNT: usize = 1000;

/// Orders per customer. Orders are spread round-robin over customers so
/// every customer has the same number of them.
pub const ORDERS_PER_CUSTOMER: usize = 3;

/// Cities cycled through by customer index: enough variety to look like
/// real data, few enough that tests can predict the value.
const CITIES: [&str; 8] = [
    "Lisbon", "Oslo", "Nairobi", "Montreal", "Osaka", "Lima", "Tallinn", "Perth",
];

/// One customer. Ids are strings (as most real APIs expose them) so that
/// policies and tests treat them as opaque path segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub email: String,
    pub city: String,
}

/// One order, linked to a customer by `customer_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub total_cents: u64,
}

/// All records, built once at start-up and shared read-only by the workers.
#[derive(Debug, Clone)]
pub struct Dataset {
    customers: Vec<Customer>,
    orders: Vec<Order>,
}

impl Dataset {
    /// Builds the fixed data set: customers "1".."1000" and
    /// `CUSTOMER_COUNT * ORDERS_PER_CUSTOMER` orders.
    pub fn generate() -> Self {
        let customers = (1..=CUSTOMER_COUNT)
            .zip(CITIES.iter().cycle())
            .map(|(n, city)| Customer {
                id: n.to_string(),
                name: format!("Customer {n}"),
                email: format!("customer{n}@example.test"),
                city: (*city).to_string(),
            })
            .collect();
        let orders = (1..=CUSTOMER_COUNT * ORDERS_PER_CUSTOMER)
            .map(|n| Order {
                id: n.to_string(),
                customer_id: ((n - 1) % CUSTOMER_COUNT + 1).to_string(),
                // A cheap deterministic spread between 5.00 and 999.99.
                total_cents: 500 + (n as u64).wrapping_mul(7_919) % 99_500,
            })
            .collect();
        Self { customers, orders }
    }

    /// Total number of customers (not just the returned page).
    pub fn customer_total(&self) -> usize {
        self.customers.len()
    }

    /// A page of customers; out-of-range offsets give an empty page rather
    /// than an error, like most paginated APIs.
    pub fn customers_page(&self, offset: usize, limit: usize) -> &[Customer] {
        let start = offset.min(self.customers.len());
        let end = start.saturating_add(limit).min(self.customers.len());
        self.customers.get(start..end).unwrap_or(&[])
    }

    /// Looks a customer up by its exact string id. Non-canonical spellings
    /// such as "042" are not found, so the id in the path is the id in the
    /// record — which is what a path-based policy sees.
    pub fn customer(&self, id: &str) -> Option<&Customer> {
        let n: usize = id.parse().ok()?;
        self.customers
            .get(n.checked_sub(1)?)
            .filter(|customer| customer.id == id)
    }

    /// The first `limit` orders.
    pub fn orders(&self, limit: usize) -> &[Order] {
        let end = limit.min(self.orders.len());
        self.orders.get(..end).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_are_deterministic_and_numbered_from_one() {
        let a = Dataset::generate();
        let b = Dataset::generate();
        assert_eq!(a.customers, b.customers);
        assert_eq!(a.customer_total(), 1000);
        assert_eq!(a.customers[0].id, "1");
        assert_eq!(a.customers[999].id, "1000");
        let c42 = a.customer("42").unwrap();
        assert_eq!(c42.name, "Customer 42");
        assert_eq!(c42.email, "customer42@example.test");
        assert_eq!(c42.city, CITIES[41 % CITIES.len()]);
    }

    #[test]
    fn customer_lookup_rejects_unknown_and_non_canonical_ids() {
        let d = Dataset::generate();
        for id in [
            "0",
            "1001",
            "042",
            "+42",
            "",
            "abc",
            "-1",
            "99999999999999999999",
        ] {
            assert!(d.customer(id).is_none(), "{id:?} should not be found");
        }
        assert!(d.customer("1000").is_some());
    }

    #[test]
    fn pages_clamp_to_the_data() {
        let d = Dataset::generate();
        assert_eq!(d.customers_page(0, 50).len(), 50);
        assert_eq!(d.customers_page(990, 50).len(), 10);
        assert_eq!(d.customers_page(990, 50)[0].id, "991");
        assert!(d.customers_page(1000, 50).is_empty());
        assert!(d.customers_page(usize::MAX, usize::MAX).is_empty());
        assert_eq!(d.customers_page(0, 100_000).len(), 1000);
    }

    #[test]
    fn orders_link_to_existing_customers() {
        let d = Dataset::generate();
        assert_eq!(d.orders(usize::MAX).len(), 3000);
        for order in d.orders(usize::MAX) {
            assert!(d.customer(&order.customer_id).is_some());
            assert!((500..100_000).contains(&order.total_cents));
        }
        assert_eq!(d.orders(2)[1].id, "2");
        assert_eq!(d.orders(2)[1].customer_id, "2");
    }
}
