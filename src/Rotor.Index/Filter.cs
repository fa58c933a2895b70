using System.Globalization;

namespace Rotor.Index;

/// <summary>
/// A condition on a record's stored fields: equality and ranges combined with and, or, not. Field values are
/// string, long, double or bool (see <see cref="FieldValues"/>); numbers compare as numbers (long with double),
/// strings ordinally. A missing field or a value of another type never matches a comparison.
/// </summary>
public abstract class Filter
{
    /// <summary>Whether a record with these fields matches.</summary>
    public abstract bool Matches(IReadOnlyDictionary<string, object>? fields);

    /// <summary><c>fields[field] == value</c>.</summary>
    public static Filter Eq(string field, object value) => new Compare(field, CompareOp.Eq, FieldValues.Normalize(value, field));
    /// <summary><c>fields[field] != value</c> (true also when the field is missing).</summary>
    public static Filter NotEq(string field, object value) => new NotFilter(Eq(field, value));
    /// <summary><c>fields[field] &lt; value</c>.</summary>
    public static Filter Less(string field, object value) => new Compare(field, CompareOp.Lt, FieldValues.Normalize(value, field));
    /// <summary><c>fields[field] &lt;= value</c>.</summary>
    public static Filter LessOrEqual(string field, object value) => new Compare(field, CompareOp.Le, FieldValues.Normalize(value, field));
    /// <summary><c>fields[field] &gt; value</c>.</summary>
    public static Filter Greater(string field, object value) => new Compare(field, CompareOp.Gt, FieldValues.Normalize(value, field));
    /// <summary><c>fields[field] &gt;= value</c>.</summary>
    public static Filter GreaterOrEqual(string field, object value) => new Compare(field, CompareOp.Ge, FieldValues.Normalize(value, field));
    /// <summary><c>min &lt;= fields[field] &lt;= max</c> (a null bound is open; exclusive bounds by the flags).</summary>
    public static Filter Range(string field, object? min, object? max, bool minInclusive = true, bool maxInclusive = true)
    {
        var parts = new List<Filter>();
        if (min is not null) parts.Add(minInclusive ? GreaterOrEqual(field, min) : Greater(field, min));
        if (max is not null) parts.Add(maxInclusive ? LessOrEqual(field, max) : Less(field, max));
        if (parts.Count == 0) throw new ArgumentException($"range on '{field}' needs at least one bound");
        return parts.Count == 1 ? parts[0] : And(parts.ToArray());
    }
    /// <summary>All of <paramref name="filters"/>.</summary>
    public static Filter And(params Filter[] filters) => new AndFilter(filters);
    /// <summary>Any of <paramref name="filters"/>.</summary>
    public static Filter Or(params Filter[] filters) => new OrFilter(filters);
    /// <summary>Not <paramref name="filter"/>.</summary>
    public static Filter Not(Filter filter) => new NotFilter(filter);

    /// <summary>
    /// Parses <c>field OP value</c> with OP one of <c>= != &lt; &lt;= &gt; &gt;=</c>; the value is a long, a double,
    /// true/false, or else a string (quotes optional). Used by the CLI: <c>--filter "year&gt;=2020"</c>.
    /// </summary>
    /// <exception cref="RotorException">The text has no operator or no field name.</exception>
    public static Filter Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string[] ops = ["!=", "<=", ">=", "=", "<", ">"];
        foreach (string op in ops)
        {
            int i = text.IndexOf(op, StringComparison.Ordinal);
            if (i <= 0) continue;
            string field = text[..i].Trim(), raw = text[(i + op.Length)..].Trim();
            if (field.Length == 0) break;
            if (raw.Length == 0) throw new RotorException($"filter '{text}': no value after {op}");
            object value = ParseValue(raw);
            // An order between a number field and a bare word matches nothing; a typo there would silently empty the
            // results. Text is compared in order only when quoted.
            if (op is not ("=" or "!=") && value is not (long or double) && !IsQuoted(raw))
                throw new RotorException($"filter '{text}': '{raw}' is not a number (quote it, \"{raw}\", to compare text)");
            return op switch
            {
                "=" => Eq(field, value), "!=" => NotEq(field, value), "<" => Less(field, value),
                "<=" => LessOrEqual(field, value), ">" => Greater(field, value), _ => GreaterOrEqual(field, value),
            };
        }
        throw new RotorException($"filter '{text}' is not 'field OP value' with OP one of = != < <= > >=");
    }

    private static bool IsQuoted(string raw) => raw.Length >= 2 && (raw[0] == '"' || raw[0] == '\'') && raw[^1] == raw[0];

    private static object ParseValue(string raw)
    {
        if (IsQuoted(raw)) return raw[1..^1];
        if (long.TryParse(raw, NumberStyles.Integer, CultureInfo.InvariantCulture, out long l)) return l;
        if (double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out double d)) return d;
        if (raw is "true" or "false") return raw == "true";
        return raw;
    }

    private enum CompareOp { Eq, Lt, Le, Gt, Ge }

    private sealed class Compare(string field, CompareOp op, object value) : Filter
    {
        public override bool Matches(IReadOnlyDictionary<string, object>? fields)
        {
            if (fields is null || !fields.TryGetValue(field, out object? v)) return false;
            int? c = FieldValues.CompareValues(v, value);
            if (c is not int r) return false;
            return op switch { CompareOp.Eq => r == 0, CompareOp.Lt => r < 0, CompareOp.Le => r <= 0, CompareOp.Gt => r > 0, _ => r >= 0 };
        }

        public override string ToString() => $"{field} {op} {value}";
    }

    private sealed class AndFilter(Filter[] parts) : Filter
    {
        public override bool Matches(IReadOnlyDictionary<string, object>? fields)
        {
            foreach (var p in parts) if (!p.Matches(fields)) return false;
            return true;
        }
    }

    private sealed class OrFilter(Filter[] parts) : Filter
    {
        public override bool Matches(IReadOnlyDictionary<string, object>? fields)
        {
            foreach (var p in parts) if (p.Matches(fields)) return true;
            return false;
        }
    }

    private sealed class NotFilter(Filter inner) : Filter
    {
        public override bool Matches(IReadOnlyDictionary<string, object>? fields) => !inner.Matches(fields);
    }
}

/// <summary>The value types a stored field may hold, and how they compare.</summary>
public static class FieldValues
{
    /// <summary>Widens a value to a stored type: integers to long, float/double/decimal to double, string and bool
    /// as they are.</summary>
    /// <exception cref="RotorException">Another type (the field is named).</exception>
    public static object Normalize(object value, string field) => value switch
    {
        string or long or double or bool => value,
        int i => (long)i, short s => (long)s, byte b => (long)b, sbyte sb => (long)sb, uint ui => (long)ui, ushort us => (long)us,
        float f => (double)f, decimal m => (double)m,
        null => throw new RotorException($"field '{field}' is null: stored fields hold string, integer, floating-point or bool values"),
        _ => throw new RotorException($"field '{field}' has type {value.GetType().Name}: stored fields hold string, integer, floating-point or bool values"),
    };

    /// <summary>Compares two stored values: null when their types cannot be compared.</summary>
    public static int? CompareValues(object a, object b) => (a, b) switch
    {
        (long x, long y) => x.CompareTo(y),
        (long x, double y) => ((double)x).CompareTo(y),
        (double x, long y) => x.CompareTo((double)y),
        (double x, double y) => x.CompareTo(y),
        (string x, string y) => string.CompareOrdinal(x, y),
        (bool x, bool y) => x.CompareTo(y),
        _ => null,
    };
}
