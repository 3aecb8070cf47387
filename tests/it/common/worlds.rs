//! One world per vendor: its emulator on 127.0.0.1:0 and a bridge with one tenant in front of
//! it, with the defaults of [`TestTenant`]'s constructors. A world is used as its bridge
//! (`w.post(..)`, `w.url()`), and keeps the sandbox so a test can set faults and read calls.

use std::ops::Deref;

use emulators::maxma::MaxmaSandbox;
use emulators::premiumbonus::PremiumBonusSandbox;
use emulators::uds::UdsSandbox;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::bridge::{TestBridge, TestBridgeBuilder};
use super::emulator::ServedEmulator;
use super::tenant::TestTenant;

/// The MAXMA emulator and a bridge whose tenant "shop" ([`TestTenant::maxma`]) calls it.
pub struct MaxmaWorld {
    pub sandbox: MaxmaSandbox,
    pub vendor: ServedEmulator,
    pub bridge: TestBridge,
}

impl MaxmaWorld {
    pub async fn start(sandbox: MaxmaSandbox) -> MaxmaWorld {
        MaxmaWorld::start_with(sandbox, |bridge, shop| bridge.tenant(shop)).await
    }

    /// `configure` gets the bridge's builder and the tenant, and adds the tenant (changed as the
    /// test needs) with whatever else the bridge should have.
    pub async fn start_with(
        sandbox: MaxmaSandbox,
        configure: impl FnOnce(TestBridgeBuilder, TestTenant) -> TestBridgeBuilder,
    ) -> MaxmaWorld {
        let vendor = ServedEmulator::start(sandbox.clone()).await;
        let shop = TestTenant::maxma(vendor.url());
        let bridge = configure(TestBridge::builder(), shop).start().await;
        MaxmaWorld {
            sandbox,
            vendor,
            bridge,
        }
    }

    /// The world's tenant again, for another bridge in front of the same emulator.
    pub fn tenant(&self) -> TestTenant {
        TestTenant::maxma(self.vendor.url())
    }
}

/// The UDS emulator and a bridge whose tenant "uds-shop" ([`TestTenant::uds`]) calls it.
pub struct UdsWorld {
    pub sandbox: UdsSandbox,
    pub vendor: ServedEmulator,
    pub bridge: TestBridge,
}

impl UdsWorld {
    pub async fn start(sandbox: UdsSandbox) -> UdsWorld {
        let vendor = ServedEmulator::start(sandbox.clone()).await;
        let bridge = TestBridge::builder()
            .tenant(TestTenant::uds(vendor.url()))
            .start()
            .await;
        UdsWorld {
            sandbox,
            vendor,
            bridge,
        }
    }
}

/// The Premium Bonus emulator and a bridge whose tenant "pb-shop"
/// ([`TestTenant::premiumbonus`]) calls it.
pub struct PbWorld {
    pub sandbox: PremiumBonusSandbox,
    pub vendor: ServedEmulator,
    pub bridge: TestBridge,
}

impl PbWorld {
    pub async fn start(sandbox: PremiumBonusSandbox) -> PbWorld {
        let vendor = ServedEmulator::start(sandbox.clone()).await;
        let bridge = TestBridge::builder()
            .tenant(TestTenant::premiumbonus(vendor.url()))
            .start()
            .await;
        PbWorld {
            sandbox,
            vendor,
            bridge,
        }
    }

    /// `GET /counterparty?search=<text>` as MoySklad sends it (the text form-encoded).
    pub async fn search(&self, text: &str) -> (StatusCode, Value) {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("search", text)
            .append_pair("retailStoreId", "s1")
            .finish();
        self.call(Method::GET, &format!("/counterparty?{query}"), None)
            .await
    }
}

macro_rules! used_as_its_bridge {
    ($($world:ty),*) => {$(
        impl Deref for $world {
            type Target = TestBridge;
            fn deref(&self) -> &TestBridge {
                &self.bridge
            }
        }
    )*};
}

used_as_its_bridge!(MaxmaWorld, UdsWorld, PbWorld);
