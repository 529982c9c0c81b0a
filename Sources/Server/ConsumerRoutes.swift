import Engine
import HTTP
import JSON
package import Postgres

/// Get Consumer Information (contract get-consumer-information.json), served from the consumers
/// table that the bank's app backend maintains with `PUT /app/v1/.../consumers/{consumerId}`.
/// Personal data is stored and served, never logged and never quoted in an error.
package struct ConsumerRoutes: Sendable {
    package var pool: PostgresPool
    package var issuers: [String: ConfigFile.Issuer]

    package init(pool: PostgresPool, issuers: [String: ConfigFile.Issuer]) {
        self.pool = pool
        self.issuers = issuers
    }

    package static let d1Path = "/banking/d1/v1/issuers/{issuerId}/consumers/{consumerId}"
    package static let appPath = "/app/v1/issuers/{issuerId}/consumers/{consumerId}"

    package var routes: [Route] {
        [
            Route("GET", Self.d1Path, name: "d1.consumer-information", authorization: D1Routes.d1) { context in
                await self.information(context)
            },
            Route("PUT", Self.appPath, name: "app.consumer-put", authorization: AppAPI.app) { context in
                await self.put(context)
            },
        ]
    }

    static let upsert = PostgresStatement("consumer_upsert", """
        insert into consumers (issuer_id, consumer_id, info) values ($1, $2, $3)
        on conflict (issuer_id, consumer_id) do update set info = excluded.info, updated_at = now()
        returning (xmax = 0) as created
        """, planning: .generic)

    /// PUT replaces the consumer's list of cards: cards no longer listed are forgotten, listed
    /// ones (even if another consumer held them) now belong to this consumer.
    static let forgetCards = PostgresStatement("consumer_cards_forget", """
        delete from consumer_cards where issuer_id = $1 and consumer_id = $2 and not (card_id = any($3::text[]))
        """, planning: .generic)

    static let claimCards = PostgresStatement("consumer_cards_claim", """
        insert into consumer_cards (issuer_id, card_id, consumer_id)
        select $1, card, $2 from unnest($3::text[]) as card
        on conflict (issuer_id, card_id) do update set consumer_id = excluded.consumer_id
        """, planning: .generic)

    /// `card_known`: no cardId asked, or the card is the consumer's (listed by the app backend or
    /// named by one of their authentications).
    static let select = PostgresStatement("consumer_select", """
        select info,
               $3::text is null
               or exists (select 1 from consumer_cards where issuer_id = $1 and consumer_id = $2 and card_id = $3)
               or exists (select 1 from authentications where issuer_id = $1 and consumer_id = $2 and card_id = $3)
               as card_known
        from consumers where issuer_id = $1 and consumer_id = $2
        """, planning: .generic)

    func information(_ context: RouteContext) async -> HTTPResponse {
        let issuer: ConfigFile.Issuer
        let consumerId: String
        switch AppAPI.issuerAndConsumer(context, issuers) {
        case .failure(let failure): return failure.response
        case .success(let found): (issuer, consumerId) = found
        }
        var cardId: String?
        if let query = context.request.query {
            guard let pairs = FormURLEncoded.parse(Array(query.utf8)) else {
                return Responses.error(400, "the query is not valid percent-encoded UTF-8")
            }
            for (name, value) in pairs where name == "cardId" {
                guard cardId == nil else { return Responses.error(400, "cardId may appear once") }
                guard Identifier.isValidCardID(value) else {
                    return Responses.error(400, "cardId must match ^[A-Za-z0-9_-]{1,48}$")
                }
                cardId = value
            }
        }
        let parameters = [issuer.id, consumerId, cardId]
        do {
            let rows = try await pool.withConnection { try $0.execute(Self.select, parameters) }
            guard rows.count == 1, rows.bool(0, "card_known") == true, let info = rows.string(0, "info") else {
                return Responses.notFound()
            }
            var headers = HTTPHeaders()
            headers.add("Content-Type", "application/json")
            // Personal data: no cache may keep it.
            headers.add("Cache-Control", "no-store")
            return HTTPResponse(status: 200, headers: headers, body: Array(info.utf8))
        } catch {
            return failureResponse(error, logger: context.logger.with("issuer_id", issuer.id), operation: "consumer-information")
        }
    }

    func put(_ context: RouteContext) async -> HTTPResponse {
        let issuer: ConfigFile.Issuer
        let consumerId: String
        switch AppAPI.issuerAndConsumer(context, issuers) {
        case .failure(let failure): return failure.response
        case .success(let found): (issuer, consumerId) = found
        }
        if let refused = AppAPI.refuseNonJSON(context) { return refused }
        let info: ConsumerInfo
        do {
            info = try ConsumerInfo.decode(context.request.body)
        } catch {
            return Responses.error(400, error.message)
        }
        let text = String(decoding: JSONValue.object(info.json).serialized(), as: UTF8.self)
        // Card ids match ^[A-Za-z0-9_-]+$: nothing in them needs quoting in an array literal.
        let cards = "{" + info.cardIds.joined(separator: ",") + "}"
        let logger = context.logger.with("issuer_id", issuer.id)
        do {
            let created = try await pool.transaction { connection in
                let rows = try connection.execute(Self.upsert, [issuer.id, consumerId, text])
                _ = try connection.execute(Self.forgetCards, [issuer.id, consumerId, cards])
                _ = try connection.execute(Self.claimCards, [issuer.id, consumerId, cards])
                return rows.bool(0, "created") == true
            }
            logger.info("consumer information stored", ["created": created ? "true" : "false",
                                                        "cards": String(info.cardIds.count)])
            return Responses.noContent()
        } catch {
            return failureResponse(error, logger: logger, operation: "consumer-put")
        }
    }
}
