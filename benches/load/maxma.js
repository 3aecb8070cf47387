// The recalc of mappings/maxma.toml, written as an nginx njs handler: what an ops team would
// build instead of the bridge (benches/load/run.sh, setup (c)). It does what the mapping does
// for a recalc: the balance, the settings (when spending) and the calculation from MAXMA, then
// the LoyaltyAPI answer with each row's discount spread over its units to the kopeck.
//
// Simplifications an ops team would likely make too (the bridge does not): whole quantities
// only in the discount spreading (a fractional quantity gets one line at the nearest kopeck),
// a simplified phone normaliser, no caching of the balance or settings between requests (njs
// 0.7 in Debian bookworm has no shared memory for that), JSON numbers through doubles.

function phoneE164(raw) {
    if (!raw) return null;
    var d = String(raw).replace(/[^0-9]/g, '');
    if (d.length == 11 && (d[0] == '7' || d[0] == '8')) return '+7' + d.slice(1);
    if (d.length == 10) return '+7' + d;
    return null;
}

function clientQuery(c) {
    var phone = phoneE164(c.phone);
    if (phone) return {phoneNumber: phone};
    if (c.discountCardNumber) return {card: c.discountCardNumber};
    return {externalId: c.meta.id};
}

function vendorRequests(req) {
    var store = req.retailStore;
    var spending = req.bonusProgram && req.bonusProgram.transactionType == 'SPENDING';
    var apply = 0;
    if (spending) {
        apply = req.preferredBonusToSpend == null ? 'auto' : Math.floor(req.preferredBonusToSpend);
    }
    var calc = {calculationQuery: {
        client: clientQuery(req.agent),
        shop: {code: store.meta.id, name: store.name || ''},
        cashier: {code: store.meta.id, name: store.name || 'Касса'},
        rows: req.positions.map(function (p, i) {
            var sku = p.assortment.meta.id;
            return {id: String(i), product: {sku: sku, title: sku, blackPrice: p.price}, qty: p.quantity};
        }),
        applyBonuses: apply,
        collectBonuses: 'auto'
    }};
    var out = {balance: clientQuery(req.agent), calc: calc};
    if (spending) out.settings = {};
    return out;
}

function kop(x) { return Math.round(x * 100); }

// round_money((price - unit) / price * 100), half away from zero, in integers.
function percent(price, unit) {
    if (price == 0) return 0;
    var n = (price - unit) * 10000;
    return Math.floor((2 * n + price) / (2 * price)) / 100;
}

function line(p, qty, unit, sn, hasSn) {
    var o = {};
    for (var k in p) o[k] = p[k];
    o.quantity = qty;
    o.discountedPrice = unit / 100;
    o.discountPercent = percent(kop(p.price), unit);
    if (hasSn) o.sn = sn;
    return o;
}

// allocate_discount for one position (whole quantities split in two when kopecks demand it).
function allocate(p, discount) {
    var price = kop(p.price), q = p.quantity;
    var hasSn = p.sn !== undefined;
    var sn = p.sn || [];
    var target = Math.round(price * q) - kop(discount);
    if (q != Math.floor(q)) return [line(p, q, Math.round(target / q), sn, hasSn)];
    var unit = Math.floor(target / q), high = target - unit * q;
    if (high == 0) return [line(p, q, unit, sn, hasSn)];
    var snHigh = sn, snLow = [];
    if (sn.length == q) { snHigh = sn.slice(0, high); snLow = sn.slice(high); }
    return [line(p, high, unit + 1, snHigh, hasSn), line(p, q - high, unit, snLow, hasSn)];
}

function answer(req, balance, settings, calc) {
    var r = calc.calculationResult;
    var rows = {};
    r.rows.forEach(function (row) { rows[String(row.id)] = row; });
    var positions = [];
    req.positions.forEach(function (p, i) {
        var row = rows[String(i)] || r.rows[i] || {};
        allocate(p, row.totalDiscount || 0).forEach(function (l) { positions.push(l); });
    });
    var bal = balance.client.bonuses;
    var type = req.bonusProgram.transactionType;
    return {
        agent: req.agent,
        positions: positions,
        bonusProgram: {
            transactionType: type,
            agentBonusBalance: bal,
            bonusValueToSpend: r.bonuses.applied,
            bonusValueToEarn: r.bonuses.collected,
            agentBonusBalanceAfter: bal - r.bonuses.applied + r.bonuses.collected,
            paidByBonusPoints: r.bonuses.applied,
            receiptExtraInfo: 'Будет начислено бонусов: ' + r.bonuses.collected
        },
        needVerification: type == 'SPENDING' && r.bonuses.applied > 0
            && !!(settings && settings.bonusApplyingConfirmation)
    };
}

function fail(r, status, code, title) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(status, JSON.stringify({errors: [{error: title, code: code}]}));
}

async function call(r, path, body) {
    var reply = await ngx.fetch(r.variables.maxma_base + path, {
        method: 'POST',
        body: JSON.stringify(body),
        headers: {'Content-Type': 'application/json', 'Accept': 'application/json',
                  'X-Processing-Key': r.variables.maxma_key, 'Accept-Language': 'ru'}
    });
    if (reply.status != 200) throw new Error('MAXMA ' + path + ': HTTP ' + reply.status);
    var json = await reply.json();
    if (json.errorCode) throw new Error('MAXMA ' + path + ': error ' + json.errorCode);
    return json;
}

async function recalc(r) {
    if (r.headersIn['Lognex-Discount-API-Auth-Token'] !== r.variables.lb_token) {
        return fail(r, 401, 1, 'Неверный токен');
    }
    var req;
    try {
        req = JSON.parse(r.requestText);
    } catch (e) {
        return fail(r, 400, 999, 'Неверный JSON');
    }
    var v = vendorRequests(req);
    try {
        var got = await Promise.all([
            call(r, '/get-balance', v.balance),
            v.settings ? call(r, '/get-settings', v.settings) : Promise.resolve(null),
            call(r, '/v2/calculate-purchase', v.calc)
        ]);
        r.headersOut['Content-Type'] = 'application/json';
        r.return(200, JSON.stringify(answer(req, got[0], got[1], got[2])));
    } catch (e) {
        r.error(String(e));
        fail(r, 502, 1000, 'Ошибка системы лояльности');
    }
}

// For the harness's check: the vendor bodies this script would send for a request.
function vendor_request(r) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(200, JSON.stringify(vendorRequests(JSON.parse(r.requestText))));
}

export default {recalc, vendor_request};
