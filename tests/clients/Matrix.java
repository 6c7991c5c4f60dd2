// The client matrix's Java client, spymemcached (Debian's libspymemcached-java), text or binary protocol: the checks
// of README.md. Usage: java -cp /usr/share/java/spymemcached.jar:DIR Matrix text|binary PORT
// Prints `ok NAME` / `FAIL NAME: why` per check; exits 1 when any failed.
import java.util.*;
import java.util.concurrent.TimeUnit;
import net.spy.memcached.*;

public class Matrix {
    interface Check { void run() throws Exception; }
    static int failed = 0;

    static void check(String name, Check c) {
        try {
            c.run();
            System.out.println("ok " + name);
        } catch (Throwable e) {
            failed++;
            System.out.println("FAIL " + name + ": " + e);
        }
    }

    static void eq(Object got, Object want, String what) {
        if (!Objects.equals(got, want)) throw new AssertionError(what + ": got " + got + ", want " + want);
    }

    public static void main(String[] args) throws Exception {
        boolean binary = args[0].equals("binary");
        ConnectionFactory f = new ConnectionFactoryBuilder()
            .setProtocol(binary ? ConnectionFactoryBuilder.Protocol.BINARY : ConnectionFactoryBuilder.Protocol.TEXT)
            .setOpTimeout(5000).build();
        MemcachedClient mc = new MemcachedClient(f, AddrUtil.getAddresses("127.0.0.1:" + args[1]));
        mc.flush().get(5, TimeUnit.SECONDS);
        check("set_get", () -> {
            eq(mc.set("mx:k", 0, "hello").get(), true, "set");
            eq(mc.get("mx:k"), "hello", "get");
        });
        check("get_multi", () -> {
            Map<String, Object> want = new HashMap<>();
            for (int i = 0; i < 40; i++) want.put("mx:m" + i, "vmx:m" + i);
            for (Map.Entry<String, Object> e : want.entrySet()) mc.set(e.getKey(), 0, e.getValue()).get();
            eq(mc.getBulk(want.keySet()), want, "getBulk");
        });
        check("cas_unique_across_keys", () -> {
            mc.set("mx:a", 0, "1").get();
            mc.set("mx:b", 0, "1").get();
            long ua = mc.gets("mx:a").getCas(), ub = mc.gets("mx:b").getCas();
            if (ua == ub) throw new AssertionError("the two keys share the CAS unique " + ua);
        });
        check("cas_round_trip", () -> {
            mc.set("mx:c", 0, "old").get();
            long u = mc.gets("mx:c").getCas();
            eq(mc.cas("mx:c", u, "new"), CASResponse.OK, "cas with the current unique");
            eq(mc.cas("mx:c", u, "again"), CASResponse.EXISTS, "cas with a stale unique");
            eq(mc.get("mx:c"), "new", "value after cas");
        });
        check("counter", () -> {
            // With a default: the binary Increment with an initial value (what failed through a proxy); in text,
            // spymemcached sends an add then an incr.
            eq(mc.incr("mx:n", 5, 10), 10L, "incr of a missing key with an initial value");
            eq(mc.incr("mx:n", 5), 15L, "incr");
            eq(mc.decr("mx:n", 3), 12L, "decr");
        });
        check("add_delete", () -> {
            mc.set("mx:d", 0, "x").get();
            eq(mc.add("mx:d", 0, "y").get(), false, "add of an existing key");
            eq(mc.delete("mx:d").get(), true, "delete");
            eq(mc.get("mx:d"), null, "get after delete");
            eq(mc.add("mx:d", 0, "z").get(), true, "add after delete");
        });
        check("flush_all", () -> {
            List<String> keys = new ArrayList<>();
            for (int i = 0; i < 40; i++) { keys.add("mx:f" + i); mc.set("mx:f" + i, 0, "x").get(); }
            eq(mc.flush().get(), true, "flush");
            eq(mc.getBulk(keys).size(), 0, "keys left after flush_all");
        });
        check("version", () -> {
            String v = mc.getVersions().values().iterator().next();
            if (v == null || !Character.isDigit(v.charAt(0))) throw new AssertionError("version " + v + " does not start with a digit");
        });
        mc.shutdown(1, TimeUnit.SECONDS);
        System.exit(failed > 0 ? 1 : 0);
    }
}
